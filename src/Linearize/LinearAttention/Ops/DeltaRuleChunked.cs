using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// The (gated) delta rule chunk by chunk — the training/prefill kernel for DeltaNet (Yang et al. 2024) and Gated
/// DeltaNet (Yang et al. 2025): the same function as <see cref="DeltaRuleRecurrent"/>, with plain differentiable ops
/// (autograd gives the gradients). The algorithm is fla's <c>chunk_delta_rule</c> / <c>chunk_gated_delta_rule</c>
/// (<c>wy_fast.py</c>, <c>chunk.py</c>): the WY representation of the chunk's product of Householder-like transitions,
/// obtained by the UT transform.
/// </summary>
/// <remarks>
/// <para>Within a chunk, with Γ_i the chunk-local inclusive cumulative log α and S_0 the state entering it, the state
/// after step i is <c>S_i = e^{Γ_i} S_0 + Σ_{j≤i} e^{Γ_i−Γ_j} k_j ν_jᵀ</c>, where ν_j = β_j (v_j − Sᵀ_{j−1}α_j k_j)
/// is the error step j writes. Writing that condition for every row gives a unit lower-triangular system
/// <c>(I + A) ν = βV − (β e^Γ ⊙ K) S_0</c> with <c>A_ij = β_i (k_i·k_j) e^{Γ_i−Γ_j}</c> for j &lt; i. Its solution,
/// <c>ν = U − W S_0</c> with <c>U = (I + A)⁻¹ βV</c> and <c>W = (I + A)⁻¹ (β e^Γ ⊙ K)</c> (the UT transform), needs
/// only the chunk's own keys, so U and W for every chunk are computed at once; only the C-row correction <c>W S_0</c>
/// is sequential. Then, as in chunked GLA, <c>O = (Q ⊙ e^Γ) S_0 + ((Q Kᵀ) ⊙ D) ν</c> and
/// <c>S ← e^{Γ_last} S_0 + (K ⊙ e^{Γ_last−Γ})ᵀ ν</c>.</para>
/// <para>fla inverts (I + A) by forward substitution in 16-row blocks (<c>solve_tril</c>); here libtorch's
/// triangular solve does it on [βV | β e^Γ K] directly (one solve, no explicit inverse), with autograd through it.</para>
/// <para>Every exponent is relative and non-positive: Γ_i − Γ_j only for j ≤ i (masked to −∞ before exp),
/// Γ_i and Γ_last − Γ_i inside one chunk. No <c>exp(−Γ)</c> over a long span is ever formed, so strong decays
/// neither overflow nor lose precision. Padded steps (k = 0, β = 0, log α = 0) write nothing and do not decay, so
/// the end padding of the last chunk is exact.</para>
/// </remarks>
public static class DeltaRuleChunked
{
    public const int DefaultChunkSize = 64; // fla chunk_(gated_)delta_rule BT

    /// <summary>
    /// <c>q, k [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, <c>beta [B, T, H]</c>, <c>logAlpha [B, T, H]</c> (≤ 0; null =
    /// α = 1, DeltaNet), optional initial state <c>[B, H, K, V]</c>. Returns <c>o [B, T, H, V]</c> and the final
    /// state <c>[B, H, K, V]</c>, both float32.
    /// </summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? logAlpha,
        double scale, Tensor? initialState = null, int chunkSize = DefaultChunkSize)
    {
        if (chunkSize < 1)
            throw new ArgumentException($"chunk size must be positive, got {chunkSize}");
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var state = initialState?.to(ScalarType.Float32) ?? zeros(b, h, dk, dv, device: q.device);
        if (t == 0)
            return (zeros(b, 0, h, dv, device: q.device).MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());

        var qc = ChunkLayout.Fold(q, chunkSize).Times(scale);         // [B, H, N, C, K]
        var kc = ChunkLayout.Fold(k, chunkSize);                       // [B, H, N, C, K]
        var vc = ChunkLayout.Fold(v, chunkSize);                       // [B, H, N, C, V]
        var betac = ChunkLayout.Fold(beta.unsqueeze(-1), chunkSize);   // [B, H, N, C, 1]
        var causal = ChunkLayout.Causal(chunkSize, q.device);          // j ≤ i

        // Γ and the relative decays. Ungated (DeltaNet): every decay is 1, and only the causal mask remains.
        Tensor? gamma = null, decay;
        if (logAlpha is null)
        {
            decay = causal.to(ScalarType.Float32);                     // [C, C]
        }
        else
        {
            gamma = ChunkLayout.Fold(logAlpha.unsqueeze(-1), chunkSize).cumsum(3);     // [B, H, N, C, 1]
            var logDecay = gamma - gamma.transpose(-2, -1);                             // Γ_i − Γ_j
            decay = logDecay.MaskedFill(causal.logical_not(), float.NegativeInfinity).exp(); // masked before exp
        }

        // The UT transform: (I + A) [U | W] = [βV | β e^Γ K], A strictly lower. unitriangular = true reads only the
        // strict lower part and takes the diagonal as 1 (its gradient is confined to the strict lower part too).
        var a = (kc.matmul(kc.transpose(-2, -1)) * decay * betac).tril(-1);           // [B, H, N, C, C]
        var kBeta = kc * betac;
        if (gamma is not null)
            kBeta = kBeta * gamma.exp();
        var solved = linalg.solve_triangular(a, cat(new[] { vc * betac, kBeta }, -1), upper: false, unitriangular: true);
        var u = solved.narrow(-1, 0, dv);                              // [B, H, N, C, V]
        var w = solved.narrow(-1, dv, dk);                             // [B, H, N, C, K]

        var intra = qc.matmul(kc.transpose(-2, -1)) * decay;          // [B, H, N, C, C], zero above the diagonal
        var qDecayed = gamma is null ? qc : qc * gamma.exp();          // q_i e^{Γ_i}: reads the state entering the chunk
        Tensor? kToEnd = null, chunkDecay = null;
        if (gamma is not null)
        {
            var gammaLast = gamma.narrow(3, chunkSize - 1, 1);        // [B, H, N, 1, 1]
            kToEnd = kc * (gammaLast - gamma).exp();                   // k_j e^{Γ_last − Γ_j}: carries k_j to the chunk end
            chunkDecay = gammaLast.exp();
        }

        long n = qc.shape[2];
        var outputs = new List<Tensor>((int)n);
        for (long c = 0; c < n; c++)
        {
            var nu = u.select(2, c) - w.select(2, c).matmul(state);   // ν = U − W S_0: the errors the chunk writes
            outputs.Add(qDecayed.select(2, c).matmul(state).Plus(intra.select(2, c).matmul(nu)));
            var kEnd = kToEnd?.select(2, c) ?? kc.select(2, c);
            var carried = chunkDecay is null ? state : state * chunkDecay.select(2, c);
            state = carried.Plus(kEnd.transpose(-2, -1).matmul(nu));
        }

        var o = ChunkLayout.Unfold(stack(outputs, 2), t);
        return (o.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }
}
