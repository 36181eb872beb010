using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// The LoLCATs sliding-window hybrid (docs/METHODS.md §2.4) with LoLA's sparse cache (§1.7): each query's softmax covers
/// its window and the cached pairs that are slot members for it, and its linear term covers the state before the call
/// plus the pairs folded during the call before it — one normalizer, as <see cref="HybridWindowLinear"/>:
/// <code>
/// ŷ_i = ( γ Σ_{j∈W(i)∪M(i)} e^{s_ij − c_i} v_j + λ (φq_i·S_v + Σ_{j∈L(i)} φq_i·φk_j v_j) )
///     / ( γ Σ_{j∈W(i)∪M(i)} e^{s_ij − c_i}       + λ (φq_i·z   + Σ_{j∈L(i)} φq_i·φk_j) )
/// </code>
/// with <c>s_ij = q_i·k_j/√d</c> and the stabilizer <c>c_i</c> the maximum over <c>W(i) ∪ M(i)</c> (a cached pair may
/// score above every window key). Who is a member when and who is folded when is decided beforehand by
/// <see cref="LolcatsSparseRule.Simulate"/>; the pool is masked per query, so the cost is O(T·P) — the reference form.
/// </summary>
public static class SparseHybridWindowLinear
{
    /// <summary>
    /// <paramref name="q"/> <c>[B, H, T, D]</c> post-RoPE, <paramref name="fq"/> <c>[B, H, T, F]</c>; the pool (N slots, then
    /// the E entries whose last T are the queries' own keys) already repeated to H heads: <paramref name="keys"/>
    /// <c>[B, H, P, D]</c>, <paramref name="values"/> <c>[B, H, P, Dv]</c>, <paramref name="fk"/> <c>[B, H, P, F]</c>;
    /// entry positions and validity <c>[B, E]</c>; <paramref name="enter"/>, <paramref name="exit"/>, <paramref name="fold"/>
    /// <c>[B, H, P]</c> int64 (call-relative query indices); <paramref name="gamma"/>, <paramref name="lambda"/> <c>[H]</c>;
    /// <paramref name="state"/> <c>[B, H, F, Dv + 1]</c>. Returns <c>[B, H, T, Dv]</c> float32.
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor fq, Tensor keys, Tensor values, Tensor fk, Tensor entryPositions, Tensor entryValid,
        Tensor enter, Tensor exit, Tensor fold, Tensor gamma, Tensor lambda, Tensor state, int window, int queryBlock)
    {
        if (window < 1 || queryBlock < 1)
            throw new ArgumentException($"window ({window}) and query block ({queryBlock}) must be positive");
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], p = keys.shape[2], e = entryPositions.shape[1];
        long n = p - e, offset = e - t, dv = values.shape[3];
        var device = q.device;
        var qf = q.to(ScalarType.Float32).Times(1.0 / Math.Sqrt(d));
        var kf = keys.to(ScalarType.Float32);
        var vf = values.to(ScalarType.Float32);
        var fkf = fk.to(ScalarType.Float32);
        var fqf = fq.to(ScalarType.Float32);
        var sv = state.to(ScalarType.Float32);
        var g = gamma.to(ScalarType.Float32).view(1, h, 1, 1);
        var l = lambda.to(ScalarType.Float32).view(1, h, 1, 1);
        var slotColumns = zeros(new long[] { b, 1, n }, ScalarType.Bool, device);
        var outputs = new List<Tensor>();
        for (long s = 0; s < t; s += queryBlock)
        {
            long tb = Math.Min(t, s + queryBlock) - s;
            var qi = TorchArithmetic.Arange(s, s + tb, ScalarType.Int64, device);              // call-relative query indices
            var query = qi.view(1, 1, tb, 1);
            // Window: entries by position (the last w keys up to the query) and by index (causal, fewer than w back).
            var qp = entryPositions.narrow(1, offset + s, tb).unsqueeze(2);                   // [B, Tb, 1]
            var kp = entryPositions.unsqueeze(1);                                              // [B, 1, E]
            var distance = (qi.Plus(offset).view(-1, 1) - TorchArithmetic.Arange(0, e, ScalarType.Int64, device).view(1, -1)).unsqueeze(0);
            var inWindow = (kp <= qp).logical_and(kp > qp.Minus(window)).logical_and(entryValid.unsqueeze(1))
                .logical_and(distance.Ge(0)).logical_and(distance.Lt(window));                 // [B, Tb, E]
            var windowMask = cat(new[] { slotColumns.expand(b, tb, n), inWindow }, 2).unsqueeze(1); // [B, 1, Tb, P]
            var member = (enter.unsqueeze(2) <= query).logical_and(exit.unsqueeze(2) > query);  // [B, H, Tb, P]
            var softmax = windowMask.logical_or(member);
            var linear = fold.unsqueeze(2) <= query;

            var scores = qf.narrow(2, s, tb).matmul(kf.transpose(-2, -1));                   // [B, H, Tb, P]
            var masked = scores.MaskedFill(softmax.logical_not(), float.MinValue);
            var c = masked.amax(new long[] { -1 }, keepdim: true);
            c = c.MaskedFill(softmax.any(-1, keepdim: true).logical_not(), 0);
            var expw = (masked - c).exp() * softmax.to(ScalarType.Float32);
            var fqb = fqf.narrow(2, s, tb);
            var lin = fqb.matmul(fkf.transpose(-2, -1)) * linear.to(ScalarType.Float32);      // [B, H, Tb, P]
            var fromState = fqb.matmul(sv);                                                    // [B, H, Tb, Dv + 1]
            var numerator = (g * expw.matmul(vf)).Plus(l * lin.matmul(vf).Plus(fromState.narrow(-1, 0, dv)));
            var denominator = (g * expw.sum(-1, keepdim: true)).Plus(l * lin.sum(-1, keepdim: true).Plus(fromState.narrow(-1, dv, 1)));
            // Padded queries have an empty window and a zero denominator: give them 0 instead of 0/0.
            var empty = denominator.Eq(0).to(ScalarType.Float32).detach();
            outputs.Add(numerator / denominator.Plus(empty));
        }

        return cat(outputs, 2).MoveToOuterDisposeScope();
    }
}
