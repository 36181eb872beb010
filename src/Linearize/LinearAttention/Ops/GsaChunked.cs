using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Chunked gated slot attention (fla <c>chunk_gsa_fwd</c>: <c>chunk_gsa_fwd_k</c> → softmax → <c>chunk_gsa_fwd_v</c>).
/// Pass 2 is exactly <see cref="GlaChunked"/> with (query p, key s, value v, gate g). Pass 1 has its gate on the
/// output (slot) side — <c>u_i[m] = scale · Σ_{j≤i} (q_i·k_j) s_j[m] exp(Γ_i[m] − Γ_j[m])</c> — and is computed here
/// with the same sub-chunk reference-point scheme, so every exponent is ≤ 0.
/// </summary>
public static class GsaChunked
{
    public static (Tensor Output, Tensor KeyState, Tensor ValueState) Forward(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g,
        double scale, Tensor? keyState = null, Tensor? valueState = null,
        int chunkSize = GlaChunked.DefaultChunkSize, int subChunkSize = GlaChunked.DefaultSubChunkSize)
    {
        using var scope = NewDisposeScope();
        var (u, hk) = SlotScores(q, k, s, g, scale, keyState, chunkSize, subChunkSize);
        var p = u.softmax(-1);
        var (o, hv) = GlaChunked.Forward(p, s, v, g, 1.0, valueState, chunkSize, subChunkSize);
        return (o.MoveToOuterDisposeScope(), hk.MoveToOuterDisposeScope(), hv.MoveToOuterDisposeScope());
    }

    /// <summary>Pass 1: slot logits <c>u [B, T, H, M]</c> and the final key state <c>[B, H, K, M]</c>.</summary>
    internal static (Tensor Scores, Tensor KeyState) SlotScores(Tensor q, Tensor k, Tensor s, Tensor g, double scale,
        Tensor? keyState, int chunkSize, int sub)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], m = s.shape[3];
        var state = keyState?.to(ScalarType.Float32) ?? zeros(b, h, dk, m, device: q.device);
        if (t == 0)
            return (zeros(b, 0, h, m, device: q.device).MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());

        var qc = ChunkLayout.Fold(q, chunkSize).Times(scale); // [B, H, N, C, K]
        var kc = ChunkLayout.Fold(k, chunkSize);
        var sc = ChunkLayout.Fold(s, chunkSize);         // [B, H, N, C, M]
        var gamma = ChunkLayout.Fold(g, chunkSize).cumsum(3);
        var gammaLast = gamma.narrow(3, chunkSize - 1, 1);
        var sToEnd = sc * (gammaLast - gamma).exp();

        // Intra-chunk, by sub-chunk blocks of queries i and keys j ≤ i.
        int blocks = chunkSize / sub;
        var qk = qc.matmul(kc.transpose(-2, -1)); // [B, H, N, C, C], scale included
        var causal = ChunkLayout.Causal(sub, q.device);
        var rows = new List<Tensor>(blocks);
        for (int bi = 0; bi < blocks; bi++)
        {
            var gi = gamma.narrow(3, bi * sub, sub);
            var reference = gi.narrow(3, 0, 1);
            Tensor? acc = null;
            for (int bj = 0; bj < bi; bj++)
            {
                var part = qk.narrow(3, bi * sub, sub).narrow(4, bj * sub, sub)
                    .matmul(sc.narrow(3, bj * sub, sub) * (reference - gamma.narrow(3, bj * sub, sub)).exp());
                acc = acc is null ? part : acc.Plus(part);
            }

            var offDiagonal = acc is null ? null : acc * (gi - reference).exp();
            var diff = gi.unsqueeze(-2) - gi.unsqueeze(-3); // [.., sub(i), sub(j), M]
            diff = diff.MaskedFill(causal.logical_not().unsqueeze(-1), float.NegativeInfinity);
            var diag = (qk.narrow(3, bi * sub, sub).narrow(4, bi * sub, sub).unsqueeze(-1)
                        * sc.narrow(3, bi * sub, sub).unsqueeze(-3) * diff.exp()).sum(-2);
            rows.Add(offDiagonal is null ? diag : diag.Plus(offDiagonal));
        }

        var intra = cat(rows, 3); // [B, H, N, C, M]
        long n = qc.shape[2];
        var outputs = new List<Tensor>((int)n);
        var chunkDecay = gammaLast.exp(); // [B, H, N, 1, M]
        for (long c = 0; c < n; c++)
        {
            outputs.Add((qc.select(2, c).matmul(state) * gamma.select(2, c).exp()).Plus(intra.select(2, c)));
            state = (state * chunkDecay.select(2, c)).Plus(kc.select(2, c).transpose(-2, -1).matmul(sToEnd.select(2, c)));

        }

        var u = ChunkLayout.Unfold(stack(outputs, 2), t);
        return (u.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }
}
