using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// The naive twin of <see cref="HybridWindowLinear"/>: LoLCATs' <c>hybrid_attention_quadratic</c> (docs/METHODS.md §2.4) with
/// full T×T masks built from positions — a window mask W and a disjoint linear mask L covering every causal key —
/// the stabilizer over the window scores only, no 1/√d and no eps on the linear part. The terrace's blocks are counted
/// from position 0 (the paper's description, not the reference code's end-aligned blocks, §2.4.1).
/// Also the source of the hybrid attention weights for the attention-transfer cross-entropy.
/// </summary>
public static class HybridWindowLinearQuadratic
{
    /// <summary>
    /// <paramref name="q"/>, <paramref name="k"/> <c>[B, H, T, D]</c> (post-RoPE, k repeated to H heads), <paramref name="v"/>
    /// <c>[B, H, T, Dv]</c>, features <c>[B, H, T, F]</c>, positions and validity <c>[B, T]</c>, γ and λ <c>[H]</c>.
    /// Returns the output <c>[B, H, T, Dv]</c> and the attention weights <c>[B, H, T, T]</c> (rows sum to 1), float32.
    /// </summary>
    public static (Tensor Output, Tensor Weights) Forward(Tensor q, Tensor k, Tensor v, Tensor fq, Tensor fk, Tensor positions,
        Tensor valid, Tensor gamma, Tensor lambda, int window, LolcatsWindowShape shape)
    {
        using var scope = NewDisposeScope();
        long h = q.shape[1], d = q.shape[3];
        var (w, l) = Masks(positions, valid, window, shape);
        var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-2, -1)).Over(Math.Sqrt(d));
        var masked = scores.MaskedFill(w.logical_not(), float.MinValue);
        var c = masked.amax(new long[] { -1 }, keepdim: true); // not detached: c shifts the window/linear balance
        c = c.MaskedFill(w.any(-1, keepdim: true).logical_not(), 0);
        var windowPart = gamma.to(ScalarType.Float32).view(1, h, 1, 1) * (masked - c).exp() * w.to(ScalarType.Float32);
        var linearPart = lambda.to(ScalarType.Float32).view(1, h, 1, 1) *
                fq.to(ScalarType.Float32).matmul(fk.to(ScalarType.Float32).transpose(-2, -1)) * l.to(ScalarType.Float32);
        var a = windowPart.Plus(linearPart);
        var sum = a.sum(-1, keepdim: true);
        var weights = a / sum.Plus(sum.Eq(0).to(ScalarType.Float32).detach());
        var output = weights.matmul(v.to(ScalarType.Float32));
        return (output.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }

    /// <summary>W and L <c>[B, 1, T, T]</c> from positions <c>[B, T]</c> and validity.</summary>
    public static (Tensor Window, Tensor Linear) Masks(Tensor positions, Tensor valid, int window, LolcatsWindowShape shape)
    {
        var qp = positions.unsqueeze(2);
        var kp = positions.unsqueeze(1);
        var causal = (kp <= qp).logical_and(valid.unsqueeze(1)).logical_and(valid.unsqueeze(2));
        // Positions alone do not order padded entries (HF gives them position 0 too): also require index order.
        long t = positions.shape[1];
        causal = causal.logical_and(ones(t, t, dtype: ScalarType.Bool, device: positions.device).tril().unsqueeze(0));
        var inWindow = shape == LolcatsWindowShape.Sw
            ? kp > qp.Minus(window)
            : kp.FloorDiv(window) >= qp.FloorDiv(window).Minus(1);

        return (causal.logical_and(inWindow).unsqueeze(1), causal.logical_and(inWindow.logical_not()).unsqueeze(1));
    }
}
