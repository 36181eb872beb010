namespace Linearize.LinearAttention;

/// <summary>
/// LoLA's sparse cache on a LoLCATs sliding-window layer (docs/METHODS.md §1.7): the recall error, the fold into the
/// linear state and the replay of one call's offers, in float32 on the CPU. The TorchSharp layer and the engine both run
/// this code, so a pair is scored and folded by the very same arithmetic on both sides. A linear state of one query
/// head is <c>S = Σ φk(k) [v, 1]ᵀ</c>, <c>[F, D + 1]</c> row-major (its last column is the key sum z).
/// </summary>
/// <remarks>
/// Unlike the Liger layers, a LoLCATs layer keeps the cached pairs out of its linear state (LoLA's three memories are
/// disjoint: window, sparse cache, state): a pair leaving the window is offered to the slots, and whichever pair loses
/// (the offered one when it is not kept, else the pair it replaces) is folded into the state. Which pairs the state holds
/// therefore depends on the selection, so the scores are computed while the offers are replayed, not in parallel.
/// </remarks>
public static class LolcatsSparseRule
{
    /// <summary>
    /// The recall error of a pair for one query head: the state read with the pair's own key features,
    /// <c>ŷ = φk(k)·S_v / (φk(k)·z + ε)</c>, against its value: <c>‖v − ŷ‖²</c>, with
    /// <c>ε = LinearAttentionConstants.DenominatorEps</c> (an empty state reads 0, so the error is ‖v‖²).
    /// <paramref name="phi"/> <c>[F]</c>, <paramref name="state"/> <c>[F, D + 1]</c>, <paramref name="value"/> <c>[D]</c>,
    /// <paramref name="read"/> scratch of at least D + 1 floats.
    /// </summary>
    public static float RecallError(ReadOnlySpan<float> phi, ReadOnlySpan<float> state, ReadOnlySpan<float> value, Span<float> read)
    {
        int d = value.Length, stride = d + 1;
        read = read[..stride];
        read.Clear();
        for (int f = 0; f < phi.Length; f++)
        {
            float p = phi[f];
            var row = state.Slice(f * stride, stride);
            for (int j = 0; j < stride; j++)
                read[j] += p * row[j];
        }

        float denominator = read[d] + (float)LinearAttentionConstants.DenominatorEps, error = 0;
        for (int j = 0; j < d; j++)
        {
            float r = value[j] - read[j] / denominator;
            error += r * r;
        }

        return error;
    }

    /// <summary>Adds a pair to one query head's state: <c>S += φk(k) [v, 1]ᵀ</c>. <paramref name="phi"/> <c>[F]</c>,
    /// <paramref name="state"/> <c>[F, D + 1]</c>, <paramref name="value"/> <c>[D]</c>.</summary>
    public static void Fold(ReadOnlySpan<float> phi, Span<float> state, ReadOnlySpan<float> value)
    {
        int d = value.Length, stride = d + 1;
        for (int f = 0; f < phi.Length; f++)
        {
            float p = phi[f];
            var row = state.Slice(f * stride, stride);
            for (int j = 0; j < d; j++)
                row[j] += p * value[j];
            row[d] += p;
        }
    }

    /// <summary>
    /// Replays one call of T queries the way stepping would: after query <c>i</c> the entry <c>offset + i − (w − 1)</c>
    /// leaves the window; when it is real it is offered with its error (the mean over the KV head's G query heads of
    /// <see cref="RecallError"/> against the state as it is then) through <see cref="SparseCacheRule.Offer"/>, and the
    /// loser is folded into the G states, so query <c>i + 1</c> on sees it there. Slots <paramref name="slotIndex"/>,
    /// <paramref name="slotScore"/> <c>[B, H_kv, N]</c>; entry positions <paramref name="positions"/> and validity
    /// <paramref name="valid"/> <c>[B, E]</c>; pool features <paramref name="features"/> <c>[B, H, P, F]</c> (φk of each
    /// query head) and values <paramref name="values"/> <c>[B, H_kv, P, D]</c>; the state before the call
    /// <paramref name="state"/> <c>[B, H, F, D + 1]</c> (not modified).
    /// </summary>
    public static LolcatsSparseSelection Simulate(int batch, int kvHeads, int group, int capacity, int window, int offset, int t,
        long[] slotIndex, float[] slotScore, long[] positions, bool[] valid, float[] features, float[] values, float[] state, int d)
    {
        int n = capacity, entries = positions.Length / batch, pool = n + entries, heads = kvHeads * group;
        int featureCount = features.Length / (batch * heads * pool), stateSize = featureCount * (d + 1);
        var enter = new long[batch * kvHeads * pool];
        var exit = new long[batch * kvHeads * pool];
        var fold = Enumerable.Repeat(long.MaxValue, batch * kvHeads * pool).ToArray();
        var slotPool = new long[batch * kvHeads * n];
        var index = (long[])slotIndex.Clone();
        var scores = (float[])slotScore.Clone();
        var after = (float[])state.Clone();
        var read = new float[d + 1];
        for (int b = 0; b < batch; b++)
            for (int kv = 0; kv < kvHeads; kv++)
            {
                int unit = b * kvHeads + kv;
                var idx = index.AsSpan(unit * n, n);
                var sc = scores.AsSpan(unit * n, n);
                var owner = slotPool.AsSpan(unit * n, n);
                var en = enter.AsSpan(unit * pool, pool);
                var ex = exit.AsSpan(unit * pool, pool);
                var fo = fold.AsSpan(unit * pool, pool);
                ReadOnlySpan<float> Phi(int h, int p) => features.AsSpan(((b * heads + h) * pool + p) * featureCount, featureCount);
                ReadOnlySpan<float> Value(int p) => values.AsSpan((unit * pool + p) * d, d);
                Span<float> State(int h) => after.AsSpan((b * heads + h) * stateSize, stateSize);
                for (int s = 0; s < n; s++)
                {
                    owner[s] = idx[s] >= 0 ? s : -1;
                    if (idx[s] >= 0)
                        ex[s] = t; // enter 0: visible from the first query
                }

                for (int i = 0; i < t; i++)
                {
                    long e = offset + i - (window - 1L);
                    if (e < 0 || !valid[b * entries + e])
                        continue;
                    int p = n + (int)e;
                    float sum = 0;
                    for (int h = kv * group; h < (kv + 1) * group; h++)
                        sum += RecallError(Phi(h, p), State(h), Value(p), read);
                    bool full = !idx.Contains(-1L);
                    int slot = SparseCacheRule.Offer(idx, sc, positions[b * entries + e], sum / group);
                    long loser = slot < 0 ? p : full ? owner[slot] : -1;
                    if (slot >= 0)
                    {
                        if (owner[slot] >= 0)
                            ex[(int)owner[slot]] = i + 1;
                        owner[slot] = p;
                        en[p] = i + 1;
                        ex[p] = t;
                    }

                    if (loser < 0)
                        continue;
                    fo[(int)loser] = i + 1;
                    for (int h = kv * group; h < (kv + 1) * group; h++)
                        Fold(Phi(h, (int)loser), State(h), Value((int)loser));
                }
            }

        return new LolcatsSparseSelection(pool, enter, exit, fold, slotPool, index, scores, after);
    }
}
