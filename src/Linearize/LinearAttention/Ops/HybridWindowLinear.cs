using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// The LoLCATs hybrid of softmax attention over a window and linear attention over every older key, sharing one
/// normalizer (paper Eq. 7, docs/METHODS.md §2.4), computed in O(T·(block + lag)) time and memory — never a T×T matrix:
/// <code>
/// ŷ_i = ( γ Σ_{j∈W(i)} e^{s_ij − c_i} v_j + λ Σ_{j∈L(i)} φq_i·φk_j v_j ) / ( γ Σ_{j∈W(i)} e^{s_ij − c_i} + λ Σ_{j∈L(i)} φq_i·φk_j )
/// </code>
/// with <c>s_ij = q_i·k_j/√d</c>, the stabilizer <c>c_i</c> the maximum over the window scores only, no 1/√d and no
/// eps on the linear part (docs/METHODS.md §2.4.1). <see cref="HybridWindowLinearQuadratic"/> is the naive twin.
/// </summary>
/// <remarks>
/// How it stays linear: a key at least <c>lag</c> tokens behind a query (<see cref="LolcatsOptions.Lag"/>: w for the
/// sliding window, 2w for the terrace) is always in L(i). Queries run in blocks of <c>queryBlock</c>; block
/// <c>[s, e)</c> scores the keys <c>[s − lag + 1, e)</c> densely, classifying each pair by position into W, L (the
/// terrace's previous-but-one block, and the keys ≥ lag behind later queries of the block) or neither; every key before
/// <c>s − lag + 1</c> is in L for the whole block and enters through the running state <c>R = Σ φk_j [v_j, 1]ᵀ</c>
/// (float32). Window membership uses the tokens' absolute positions, the lag uses their indices: the two agree because
/// real tokens are contiguous (left padding, then tokens), and padded keys are zeroed out of every term.
/// </remarks>
public static class HybridWindowLinear
{
    /// <summary>
    /// Queries are the last T of N entries (earlier entries are cached context).
    /// <paramref name="q"/> <c>[B, H, T, D]</c>, <paramref name="k"/> <c>[B, H, N, D]</c> (post-RoPE, already repeated to H
    /// heads), <paramref name="v"/> <c>[B, H, N, Dv]</c>, features <paramref name="fq"/> <c>[B, H, T, F]</c>,
    /// <paramref name="fk"/> <c>[B, H, N, F]</c>; key positions / validity <c>[B, N]</c>; <paramref name="gamma"/>,
    /// <paramref name="lambda"/> <c>[H]</c>; <paramref name="state"/> (optional) <c>[B, H, F, Dv + 1]</c>: Σ φk [v, 1]ᵀ over
    /// keys before the N entries. Returns <c>[B, H, T, Dv]</c> float32.
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, Tensor fq, Tensor fk, Tensor keyPositions, Tensor keyValid,
        Tensor gamma, Tensor lambda, Tensor? state, int window, LolcatsWindowShape shape, int queryBlock = 64)
    {
        if (window < 1 || queryBlock < 1)
            throw new ArgumentException($"window ({window}) and query block ({queryBlock}) must be positive");
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], n = k.shape[2], dv = v.shape[3];
        long offset = n - t;
        int lag = shape == LolcatsWindowShape.Sw ? window : 2 * window;
        double scale = 1.0 / Math.Sqrt(d);
        var validF = keyValid.to(ScalarType.Float32).view(b, 1, n, 1);
        var qf = q.to(ScalarType.Float32).Times(scale);
        var kf = k.to(ScalarType.Float32);
        var vf = v.to(ScalarType.Float32) * validF;
        var v1 = cat(new[] { vf, validF.expand(b, h, n, 1) }, -1);   // [B, H, N, Dv+1]: the ones column carries the denominator
        var fkf = fk.to(ScalarType.Float32) * validF;
        var fqf = fq.to(ScalarType.Float32);
        var g = gamma.to(ScalarType.Float32).view(1, h, 1, 1);
        var l = lambda.to(ScalarType.Float32).view(1, h, 1, 1);

        Tensor running = state?.to(ScalarType.Float32) ?? zeros(new long[] { b, h, fk.shape[3], dv + 1 }, device: q.device);
        long folded = 0; // entries [0, folded) are inside `running`
        var outputs = new List<Tensor>();
        for (long s = offset; s < n; s += queryBlock)
        {
            long e = Math.Min(n, s + queryBlock), lo = Math.Max(0, s - lag + 1);
            if (lo > folded)
            {
                running = running.Plus(fkf.narrow(2, folded, lo - folded).transpose(-2, -1).matmul(v1.narrow(2, folded, lo - folded)));
                folded = lo;
            }

            long tb = e - s, kb = e - lo;
            var (windowMask, linearMask) = Masks(keyPositions, keyValid, s, e, lo, lag, window, shape); // [B, 1, Tb, Kb]
            var scores = qf.narrow(2, s - offset, tb).matmul(kf.narrow(2, lo, kb).transpose(-2, -1));  // [B, H, Tb, Kb]
            var masked = scores.MaskedFill(windowMask.logical_not(), float.MinValue);
            // c_i over the window only; a row without window keys (a padded query) gets 0, so nothing is NaN.
            var c = masked.amax(new long[] { -1 }, keepdim: true); // not detached: c shifts the window/linear balance
            c = c.MaskedFill(windowMask.any(-1, keepdim: true).logical_not(), 0);
            var expw = (masked - c).exp() * windowMask.to(ScalarType.Float32);              // [B, H, Tb, Kb]
            var fqb = fqf.narrow(2, s - offset, tb);
            var lin = fqb.matmul(fkf.narrow(2, lo, kb).transpose(-2, -1)) * linearMask.to(ScalarType.Float32);
            var win = expw.matmul(vf.narrow(2, lo, kb));                                   // [B, H, Tb, Dv]
            var linear = lin.matmul(v1.narrow(2, lo, kb)).Plus(fqb.matmul(running));     // [B, H, Tb, Dv+1]
            var numerator = (g * win).Plus(l * linear.narrow(-1, 0, dv));
            var denominator = (g * expw.sum(-1, keepdim: true)).Plus(l * linear.narrow(-1, dv, 1));
            // Padded queries have an empty window and a zero denominator: give them 0 instead of 0/0.
            var empty = denominator.Eq(0).to(ScalarType.Float32).detach();
            outputs.Add(numerator / denominator.Plus(empty));
        }

        return cat(outputs, 2).MoveToOuterDisposeScope();
    }

    /// <summary>Window and linear masks <c>[B, 1, Tb, Kb]</c> for queries <c>[s, e)</c> and keys <c>[lo, e)</c> (indices into
    /// the N entries): W by position (the shape's rule), L = the other causal valid keys.</summary>
    private static (Tensor Window, Tensor Linear) Masks(Tensor positions, Tensor valid, long s, long e, long lo, int lag,
        int window, LolcatsWindowShape shape)
    {
        var device = positions.device;
        var qi = TorchArithmetic.Arange(s, e, ScalarType.Int64, device).view(-1, 1);
        var kj = TorchArithmetic.Arange(lo, e, ScalarType.Int64, device).view(1, -1);
        var distance = (qi - kj).unsqueeze(0);                                   // [1, Tb, Kb] index distance
        var qp = positions.narrow(1, s, e - s).unsqueeze(2);                     // [B, Tb, 1]
        var kp = positions.narrow(1, lo, e - lo).unsqueeze(1);                   // [B, 1, Kb]
        var kv = valid.narrow(1, lo, e - lo).unsqueeze(1);
        var causal = (kp <= qp).logical_and(distance.Ge(0)).logical_and(kv);
        var inWindow = shape == LolcatsWindowShape.Sw
            ? kp > qp.Minus(window)
            : kp.FloorDiv(window) >= qp.FloorDiv(window).Minus(1);
        var w = causal.logical_and(inWindow).logical_and(distance.Lt(lag));
        var linear = causal.logical_and(inWindow.logical_not()).logical_or(distance.Ge(lag).logical_and(kv));

        return (w.unsqueeze(1), linear.unsqueeze(1));
    }
}
