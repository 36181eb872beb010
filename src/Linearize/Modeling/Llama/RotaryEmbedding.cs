using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// Rotary position embedding tables in Hugging Face's rotate_half layout (pairs <c>(i, i + d/2)</c>), with the
/// <c>default</c>, <c>linear</c> and <c>llama3</c> frequency schedules. Not a module: it has no state to save, and
/// TorchSharp does not move non-persistent buffers with <c>.to()</c>, so tables are plain float32 tensors
/// indexed by position.
/// </summary>
/// <remarks>Ports transformers <c>modeling_rope_utils.py</c> (<c>_compute_default_rope_parameters</c>,
/// <c>_compute_linear_scaling_rope_parameters</c>, <c>_compute_llama3_parameters</c>).</remarks>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _invFreq; // [d/2] float32
    private Tensor _cos;              // [capacity, d] float32
    private Tensor _sin;

    public RotaryEmbedding(int headDim, double theta, RopeScaling scaling)
    {
        HeadDim = headDim;
        using (var scope = NewDisposeScope())
        {
            // inv_freq = 1 / theta^(arange(0, d, 2) / d), in float32 as transformers computes it.
            var exponents = TorchArithmetic.Arange(0, headDim, 2, ScalarType.Int64).to(ScalarType.Float32).Over(headDim);
            var invFreq = torch.pow(torch.tensor((float)theta), exponents).reciprocal();
            invFreq = scaling.Type switch
            {
                RopeScalingType.None => invFreq,
                RopeScalingType.Linear => invFreq.Over((float)scaling.Factor),
                RopeScalingType.Llama3 => Llama3(invFreq, scaling),
                _ => throw new ArgumentOutOfRangeException(nameof(scaling)),
            };
            _invFreq = invFreq.DetachFromDisposeScope();
        }

        _cos = torch.empty(0, headDim);
        _sin = torch.empty(0, headDim);
    }

    public int HeadDim { get; }

    public Tensor InverseFrequencies => _invFreq;

    private static Tensor Llama3(Tensor invFreq, RopeScaling s)
    {
        double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        var wavelen = invFreq.reciprocal().Times(2 * Math.PI);
        var scaled = torch.where(wavelen.Gt(lowWavelen), invFreq.Over((float)s.Factor), invFreq);
        var smooth = wavelen.reciprocal().Times(s.OriginalMaxPositionEmbeddings).Minus(s.LowFreqFactor)
            .Over(s.HighFreqFactor - s.LowFreqFactor);
        var smoothed = (smooth.OneMinus() * scaled).Over((float)s.Factor).Plus(smooth * scaled);
        var isMedium = wavelen.Ge(highWavelen).logical_and(wavelen.Le(lowWavelen));
        return torch.where(isMedium, smoothed, scaled).to(ScalarType.Float32);
    }

    private void EnsureCapacity(long length)
    {
        if (_cos.shape[0] >= length)
            return;
        long capacity = Math.Max(length, Math.Max(1024, _cos.shape[0] * 2));
        using var scope = NewDisposeScope();
        var positions = TorchArithmetic.Arange(capacity, ScalarType.Float32);
        var freqs = positions.unsqueeze(1) * _invFreq.unsqueeze(0); // [capacity, d/2]
        var emb = torch.cat(new[] { freqs, freqs }, dim: 1);
        _cos.Dispose();
        _sin.Dispose();
        _cos = emb.cos().DetachFromDisposeScope();
        _sin = emb.sin().DetachFromDisposeScope();
    }

    /// <summary>cos and sin for <paramref name="positionIds"/> <c>[B, T]</c>, shaped <c>[B, 1, T, d]</c> in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Get(Tensor positionIds, ScalarType dtype)
    {
        long max = positionIds.numel() == 0 ? 0 : positionIds.max().item<long>();
        EnsureCapacity(max + 1);
        using var scope = NewDisposeScope();
        var flat = positionIds.reshape(-1);
        var shape = new[] { positionIds.shape[0], 1, positionIds.shape[1], HeadDim };
        var cos = _cos.index_select(0, flat).reshape(shape).to(dtype);
        var sin = _sin.index_select(0, flat).reshape(shape).to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Applies the rotation to <paramref name="x"/> <c>[B, H, T, d]</c> (HF <c>apply_rotary_pos_emb</c>).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = torch.cat(new[] { -x2, x1 }, dim: -1);
        return (x * cos).Plus(rotated * sin).MoveToOuterDisposeScope();

    }

    public void Dispose()
    {
        _invFreq.Dispose();
        _cos.Dispose();
        _sin.Dispose();
    }
}
