using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Chunked gated linear attention (per-channel gate), the training/prefill kernel: the same function as
/// <see cref="GlaRecurrent"/>, computed chunk by chunk with plain differentiable ops (autograd gives the gradients).
/// Follows fla <c>fla/ops/gla/chunk.py</c> (docs/METHODS.md §3.3): chunk-local inclusive cumulative log gates Γ in float32;
/// inter-chunk states <c>S ← Diag(exp Γ_last) S + (K ⊙ exp(Γ_last − Γ))ᵀ V</c>; intra-chunk scores built by
/// sub-chunk blocks — off-diagonal blocks as one matmul around a reference row Γ_ref (the first row of the query
/// block) so that both factors <c>exp(Γ_i − Γ_ref)</c> and <c>exp(Γ_ref − Γ_j)</c> have non-positive exponents, and
/// diagonal blocks element-wise with <c>exp(Γ_i − Γ_j)</c>, j ≤ i. No exponent is ever positive, so no
/// <c>exp(−G)</c> over a long span is formed and nothing overflows.
/// </summary>
public static class GlaChunked
{
    public const int DefaultChunkSize = 64;   // fla chunk_gla BT
    public const int DefaultSubChunkSize = 16; // fla chunk_gla BC

    /// <summary>
    /// <c>q, k, g [B, T, H, K]</c> (g = log gate ≤ 0), <c>v [B, T, H, V]</c>, optional initial state <c>[B, H, K, V]</c>.
    /// Returns <c>o [B, T, H, V]</c> and the final state <c>[B, H, K, V]</c>, both float32.
    /// </summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor g, double scale,
        Tensor? initialState = null, int chunkSize = DefaultChunkSize, int subChunkSize = DefaultSubChunkSize)
    {
        if (chunkSize % subChunkSize != 0)
            throw new ArgumentException($"chunk size {chunkSize} must be a multiple of the sub-chunk size {subChunkSize}");
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var state = initialState?.to(ScalarType.Float32) ?? zeros(b, h, dk, dv, device: q.device);
        if (t == 0)
            return (zeros(b, 0, h, dv, device: q.device).MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());

        var qc = ChunkLayout.Fold(q, chunkSize).Times(scale); // [B, H, N, C, K]
        var kc = ChunkLayout.Fold(k, chunkSize);
        var vc = ChunkLayout.Fold(v, chunkSize);         // [B, H, N, C, V]
        var gamma = ChunkLayout.Fold(g, chunkSize).cumsum(3); // chunk-local inclusive cumsum, float32
        var gammaLast = gamma.narrow(3, chunkSize - 1, 1);    // [B, H, N, 1, K]

        var qDecayed = qc * gamma.exp();                        // q_i ⊙ exp(Γ_i): reads the state entering the chunk
        var kToEnd = kc * (gammaLast - gamma).exp();            // k_j ⊙ exp(Γ_last − Γ_j): carries k_j to the chunk end
        var chunkDecay = gammaLast.squeeze(3).exp().unsqueeze(-1); // [B, H, N, K, 1]

        var intra = IntraChunkScores(qc, kc, gamma, subChunkSize); // [B, H, N, C, C], scale included via qc
        var intraOut = intra.matmul(vc);                           // [B, H, N, C, V]

        (var outputs, state) = ChunkLayout.Scan(qDecayed, kToEnd, vc, chunkDecay, intraOut, state);
        var o = ChunkLayout.Unfold(outputs, t);
        return (o.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <c>A[i, j] = Σ_c q_ic k_jc exp(Γ_ic − Γ_jc)</c> for j ≤ i within each chunk, else 0. <c>[B, H, N, C, C]</c>.
    /// </summary>
    internal static Tensor IntraChunkScores(Tensor q, Tensor k, Tensor gamma, int sub)
    {
        long chunk = q.shape[3];
        int blocks = (int)(chunk / sub);
        var causal = ChunkLayout.Causal(sub, q.device);
        var rows = new List<Tensor>(blocks);
        for (int bi = 0; bi < blocks; bi++)
        {
            var qi = q.narrow(3, bi * sub, sub);
            var gi = gamma.narrow(3, bi * sub, sub);
            var reference = gi.narrow(3, 0, 1); // Γ at the first row of the query block
            var qRef = qi * (gi - reference).exp();
            var row = new List<Tensor>(blocks);
            for (int bj = 0; bj < blocks; bj++)
            {
                if (bj > bi)
                {
                    row.Add(zeros(new long[] { q.shape[0], q.shape[1], q.shape[2], sub, sub }, device: q.device));
                    continue;
                }

                var kj = k.narrow(3, bj * sub, sub);
                var gj = gamma.narrow(3, bj * sub, sub);
                if (bj < bi)
                {
                    row.Add(qRef.matmul((kj * (reference - gj).exp()).transpose(-2, -1)));
                    continue;
                }

                // Diagonal block: element-wise decays; mask j > i before exp so no exponent is positive.
                var diff = gi.unsqueeze(-2) - gj.unsqueeze(-3); // [B, H, N, sub(i), sub(j), K]
                diff = diff.MaskedFill(causal.logical_not().unsqueeze(-1), float.NegativeInfinity);

                row.Add((qi.unsqueeze(-2) * kj.unsqueeze(-3) * diff.exp()).sum(-1));
            }

            rows.Add(cat(row, -1));
        }

        return cat(rows, -2);
    }
}
