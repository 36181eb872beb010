using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Causal sliding-window softmax attention, computed band by band in O(T·(w + block)) — never a T×T matrix.
/// A query at position p sees the keys at positions <c>p − window + 1 … p</c> (<c>window</c> keys, itself included),
/// plus the always-visible "sink" positions <c>0 … sinks − 1</c>, plus any visible cached entries from earlier calls.
/// Scores, softmax and accumulation run in float32. With a sparse pool (LoLA, docs/METHODS.md §1.7), each query also
/// sees, in the same softmax, the pool entries whose interval <c>[enter, exit)</c> of call-relative query indices holds it.
/// </summary>
/// <remarks>Liger's reference code uses flash-attention's <c>window_size=(64, 64)</c>, i.e. 65 keys; the paper's Eq. 10
/// says 64. Here <c>window</c> is the exact number of keys, so <c>--window 65</c> reproduces the reference code.</remarks>
public static class SlidingWindowSoftmax
{
    public const int DefaultBlockSize = 64;

    /// <summary>
    /// <paramref name="q"/> <c>[B, H, T, D]</c>, <paramref name="k"/>/<paramref name="v"/> <c>[B, H_kv, T, D]</c> (post-RoPE),
    /// positions <c>[B, T]</c>, valid <c>[B, T]</c> (null = all real), optional cached context, optional sparse pool: keys,
    /// values <c>[B, H_kv, P, D]</c> (post-RoPE) and enter, exit <c>[B, H_kv, P]</c> int64. Returns <c>[B, H, T, D]</c> float32.
    /// The pool is masked per query, so its cost is O(T·P) — the reference form, not a fast path.
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, Tensor positions, Tensor? valid, int window, int sinks,
        (Tensor Keys, Tensor Values, Tensor Positions, Tensor Valid)? context = null,
        (Tensor Keys, Tensor Values, Tensor Enter, Tensor Exit)? sparse = null, int blockSize = DefaultBlockSize)
    {
        if (window < 1)
            throw new ArgumentException($"window must be at least 1, got {window}");
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], hkv = k.shape[1];
        long group = h / hkv;
        double scale = 1.0 / Math.Sqrt(d);
        valid ??= ones(b, t, dtype: ScalarType.Bool, device: q.device);
        var qf = q.to(ScalarType.Float32).Times(scale);
        var kf = k.to(ScalarType.Float32);
        var vf = v.to(ScalarType.Float32);
        Tensor? ck = null, cv = null, cp = null, cvalid = null;
        if (context is { } c)
        {
            ck = c.Keys.to(ScalarType.Float32);
            cv = c.Values.to(ScalarType.Float32);
            cp = c.Positions;
            cvalid = c.Valid;
        }

        Tensor? sk = null, sv = null, sEnter = null, sExit = null;
        if (sparse is { } sp)
        {
            sk = sp.Keys.to(ScalarType.Float32);
            sv = sp.Values.to(ScalarType.Float32);
            if (group > 1)
            {
                sk = sk.repeat_interleave(group, dim: 1);
                sv = sv.repeat_interleave(group, dim: 1);
            }

            sEnter = sp.Enter.unsqueeze(2); // [B, H_kv, 1, P]
            sExit = sp.Exit.unsqueeze(2);
        }

        var outputs = new List<Tensor>();
        for (long start = 0; start < t; start += blockSize)
        {
            long end = Math.Min(t, start + blockSize);
            long bandStart = Math.Max(0, start - window + 1);
            var keyParts = new List<Tensor>();
            var valueParts = new List<Tensor>();
            var posParts = new List<Tensor>();
            var validParts = new List<Tensor>();
            if (ck is not null)
            {
                keyParts.Add(ck);
                valueParts.Add(cv!);
                posParts.Add(cp!);
                validParts.Add(cvalid!);
            }

            long sinkEnd = Math.Min(sinks, bandStart); // new sink keys that fall before the band
            if (sinkEnd > 0)
                AddRange(0, sinkEnd);
            AddRange(bandStart, end);

            void AddRange(long from, long to)
            {
                keyParts.Add(kf.narrow(2, from, to - from));
                valueParts.Add(vf.narrow(2, from, to - from));
                posParts.Add(positions.narrow(1, from, to - from));
                validParts.Add(valid.narrow(1, from, to - from));
            }

            var keys = cat(keyParts, 2);
            var values = cat(valueParts, 2);
            var keyPos = cat(posParts, 1).unsqueeze(1);      // [B, 1, K]
            var keyValid = cat(validParts, 1).unsqueeze(1);  // [B, 1, K]
            if (group > 1)
            {
                keys = keys.repeat_interleave(group, dim: 1);
                values = values.repeat_interleave(group, dim: 1);
            }

            var queryPos = positions.narrow(1, start, end - start).unsqueeze(2); // [B, Tb, 1]
            var visible = (keyPos <= queryPos).logical_and(keyValid)
                .logical_and((keyPos > queryPos.Minus(window)).logical_or(keyPos.Lt(sinks))); // [B, Tb, K]
            var scores = qf.narrow(2, start, end - start).matmul(keys.transpose(-2, -1)); // [B, H, Tb, K]
            scores = scores.MaskedFill(visible.logical_not().unsqueeze(1), float.MinValue);
            if (sk is not null)
            {
                var queryIndex = TorchArithmetic.Arange(start, end, ScalarType.Int64, q.device).view(1, 1, end - start, 1);
                var member = (sEnter! <= queryIndex).logical_and(sExit! > queryIndex); // [B, H_kv, Tb, P]
                if (group > 1)
                    member = member.repeat_interleave(group, dim: 1);
                var sparseScores = qf.narrow(2, start, end - start).matmul(sk.transpose(-2, -1)).MaskedFill(member.logical_not(), float.MinValue);
                scores = cat(new[] { scores, sparseScores }, -1);
                values = cat(new[] { values, sv! }, 2);
            }

            outputs.Add(scores.softmax(-1).matmul(values));
        }

        return cat(outputs, 2).MoveToOuterDisposeScope();
    }
}
