using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Chunked scalar-gate linear attention (fla <c>chunk_simple_gla</c>, docs/METHODS.md §3.7). With one decay per head the
/// intra-chunk decay is a matrix <c>D_ij = exp(Γ_i − Γ_j)</c> (j ≤ i, exponent ≤ 0, masked before exp), so
/// <c>O_intra = ((Q Kᵀ) ⊙ D) V</c> is two matmuls; the inter-chunk state follows the same rule as
/// <see cref="GlaChunked"/> with scalar exponents.
/// </summary>
public static class ScalarGateChunked
{
    /// <summary><c>q, k [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, <c>g [B, T, H]</c> (≤ 0); returns float32 output and state.</summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor g, double scale,
        Tensor? initialState = null, int chunkSize = GlaChunked.DefaultChunkSize)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var state = initialState?.to(ScalarType.Float32) ?? zeros(b, h, dk, dv, device: q.device);
        if (t == 0)
            return (zeros(b, 0, h, dv, device: q.device).MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());

        var qc = ChunkLayout.Fold(q, chunkSize).Times(scale);            // [B, H, N, C, K]
        var kc = ChunkLayout.Fold(k, chunkSize);
        var vc = ChunkLayout.Fold(v, chunkSize);
        var gamma = ChunkLayout.Fold(g.unsqueeze(-1), chunkSize).cumsum(3); // [B, H, N, C, 1]
        var gammaLast = gamma.narrow(3, chunkSize - 1, 1);                  // [B, H, N, 1, 1]

        var logDecay = gamma - gamma.transpose(-2, -1);                     // [B, H, N, C, C]: Γ_i − Γ_j
        var causal = ChunkLayout.Causal(chunkSize, q.device);
        var decay = logDecay.MaskedFill(causal.logical_not(), float.NegativeInfinity).exp();

        var intraOut = (qc.matmul(kc.transpose(-2, -1)) * decay).matmul(vc);

        var qDecayed = qc * gamma.exp();
        var kToEnd = kc * (gammaLast - gamma).exp();
        var chunkDecay = gammaLast.exp();                                   // [B, H, N, 1, 1]
        (var outputs, state) = ChunkLayout.Scan(qDecayed, kToEnd, vc, chunkDecay, intraOut, state);
        var o = ChunkLayout.Unfold(outputs, t);
        return (o.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }
}
