using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>The teacher's softmax attention that attention transfer compares a linear layer with (docs/METHODS.md §2.5),
/// recomputed from the layer's own q/k/v.</summary>
internal static class TeacherSoftmax
{
    /// <summary>Causal softmax attention in float32, without gradients, from post-RoPE q <c>[B, H, T, D]</c> and keys and
    /// values repeated to H heads <c>[B, H, S, D]</c>: output <c>[B, H, T, D]</c> and weights <c>[B, H, T, S]</c>.
    /// <paramref name="window"/> is the teacher's own sliding window (Mistral), 0 for none.</summary>
    public static (Tensor Output, Tensor Weights) Compute(Tensor qr, Tensor kh, Tensor vh, AttentionContext ctx, int window)
    {
        using var noGrad = no_grad();
        long headDim = qr.shape[3];
        var scores = qr.to(ScalarType.Float32).matmul(kh.to(ScalarType.Float32).transpose(-2, -1)).Over(Math.Sqrt(headDim));
        var allowed = AttentionMasks.Causal(0, qr.shape[2], kh.shape[2], ctx.KeyPadding, window > 0 ? window : null, qr.device);
        var weights = scores.MaskedFill(allowed.logical_not(), float.MinValue).softmax(-1);
        return (weights.matmul(vh.to(ScalarType.Float32)), weights);
    }
}
