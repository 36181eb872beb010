using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Linearize.Training.Optim;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter), the update of <c>torch.optim.AdamW</c> (non-fused, non-amsgrad):
/// <c>p ← p − lr·wd·p</c>; <c>m ← β1 m + (1−β1) g</c>; <c>v ← β2 v + (1−β2) g²</c>;
/// <c>p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)</c>. Written out so that its whole state (moments in
/// float32 and the step count) can be saved and restored exactly for resumable training.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly IReadOnlyList<(string Name, Parameter Parameter)> _parameters;
    private readonly Dictionary<string, Tensor> _m = new();
    private readonly Dictionary<string, Tensor> _v = new();

    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, double lr, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weightDecay = 0.01)
    {
        _parameters = parameters.ToList();
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        foreach (var (name, p) in _parameters)
        {
            _m[name] = zeros_like(p, dtype: ScalarType.Float32).DetachFromDisposeScope();
            _v[name] = zeros_like(p, dtype: ScalarType.Float32).DetachFromDisposeScope();
        }
    }

    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Updates applied so far (t in the bias corrections).</summary>
    public long Step { get; private set; }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters => _parameters;

    public void ZeroGrad()
    {
        foreach (var (_, p) in _parameters)
            p.grad?.zero_();
    }

    public void Update()
    {
        Step++;
        double bc1 = 1 - Math.Pow(Beta1, Step), bc2 = 1 - Math.Pow(Beta2, Step);
        using var noGrad = no_grad();
        foreach (var (name, p) in _parameters)
        {
            if (p.grad is null)
                continue;
            using var scope = NewDisposeScope();
            var g = p.grad.to(ScalarType.Float32);
            var m = _m[name];
            var v = _v[name];
            var p32 = p.to(ScalarType.Float32);
            p32.TimesInPlace(1 - LearningRate * WeightDecay);
            m.TimesInPlace(Beta1).PlusScaledInPlace(g, 1 - Beta1);
            v.TimesInPlace(Beta2).PlusProductInPlace(g, g, 1 - Beta2);
            var denom = v.Over(bc2).sqrt_().PlusInPlace(Eps);
            p32.PlusQuotientInPlace(m, denom, -LearningRate / bc1);

            p.copy_(p32);
        }
    }

    /// <summary>The moments as named tensors (<c>exp_avg.NAME</c>, <c>exp_avg_sq.NAME</c>), for checkpoints.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
        _m.Select(kv => new KeyValuePair<string, Tensor>("exp_avg." + kv.Key, kv.Value))
            .Concat(_v.Select(kv => new KeyValuePair<string, Tensor>("exp_avg_sq." + kv.Key, kv.Value)));

    public void LoadState(Func<string, Tensor> read, long step)
    {
        using var noGrad = no_grad();
        foreach (var (name, _) in _parameters)
        {
            using var m = read("exp_avg." + name);
            using var v = read("exp_avg_sq." + name);
            _m[name].copy_(m);
            _v[name].copy_(v);
        }

        Step = step;
    }

    public void Dispose()
    {
        foreach (var t in _m.Values.Concat(_v.Values))
            t.Dispose();
    }
}
