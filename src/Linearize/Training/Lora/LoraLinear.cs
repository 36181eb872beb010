using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Training.Lora;

/// <summary>
/// A frozen linear layer plus a low-rank update (PEFT <c>lora.Linear</c>): <c>y = base(x) + scale · B(A(dropout(x)))</c>
/// with <c>A: rank × in</c> (Kaiming-uniform, like <c>nn.Linear</c>'s default) and <c>B: out × rank</c> (zeros), so a fresh
/// adapter changes nothing. Submodule names follow PEFT: <c>base_layer</c>, <c>lora_A</c>, <c>lora_B</c>. The adapter
/// weights are float32 whatever the base dtype (float32 optimizer state), and the update is computed in float32.
/// <c>[..., in] → [..., out]</c>.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "base_layer")]
    private readonly Linear _base;
    [ComponentName(Name = "lora_A")]
    private readonly Linear _loraA;
    [ComponentName(Name = "lora_B")]
    private readonly Linear _loraB;
    private readonly double _scale;
    private readonly double _dropout;

    public LoraLinear(Linear baseLayer, LoraOptions options) : base(nameof(LoraLinear))
    {
        options.Validate();
        _base = baseLayer;
        long inFeatures = baseLayer.weight!.shape[1], outFeatures = baseLayer.weight.shape[0];
        _loraA = nn.Linear(inFeatures, options.Rank, hasBias: false, dtype: ScalarType.Float32); // kaiming_uniform(a=√5)
        _loraB = nn.Linear(options.Rank, outFeatures, hasBias: false, dtype: ScalarType.Float32);
        using (no_grad())
            _loraB.weight!.zero_();
        _scale = options.Scale;
        _dropout = options.Dropout;
        foreach (var p in _base.parameters())
            p.requires_grad = false;
        RegisterComponents();
    }

    public Linear BaseLayer => _base;

    public Linear LoraA => _loraA;

    public Linear LoraB => _loraB;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = _base.forward(x);
        var h = x.to(ScalarType.Float32);
        if (_dropout > 0 && training)
            h = nn.functional.dropout(h, _dropout, training: true);
        var update = _loraB.forward(_loraA.forward(h)).Times(_scale);
        return y.Plus(update.to(y.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>A plain linear layer with <c>W + scale · B A</c> folded in (float32 arithmetic, base dtype result).</summary>
    public Linear Merge()
    {
        var w = _base.weight!;
        var merged = nn.Linear(w.shape[1], w.shape[0], hasBias: _base.bias is not null, dtype: w.dtype);
        using (no_grad())
        {
            var delta = _loraB.weight!.matmul(_loraA.weight!).Times(_scale);
            merged.weight!.copy_(w.to(ScalarType.Float32).Plus(delta).to(w.dtype));

            if (_base.bias is not null)
                merged.bias!.copy_(_base.bias);
        }

        foreach (var p in merged.parameters())
            p.requires_grad = false;
        return merged;
    }
}
