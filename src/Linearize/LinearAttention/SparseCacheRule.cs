namespace Linearize.LinearAttention;

/// <summary>
/// LoLA's sparse-cache selection (docs/METHODS.md §1.7), shared by the TorchSharp layer and the engine so both apply
/// the very same rule. A pair that leaves the window is offered with its recall error; the cache keeps the N pairs of
/// largest error among all pairs offered so far, ordered by (error, sequence index) so that ties are broken
/// deterministically in favour of the newer pair. Because scores are fixed when a pair is written, "the N largest so
/// far" is a streaming rule: an offered pair takes an empty slot, or replaces the slot of the smallest (error, index)
/// when it is not smaller than that.
/// </summary>
public static class SparseCacheRule
{
    /// <summary>
    /// Offers pair <paramref name="pair"/> (sequence index) with error <paramref name="score"/> to the slots
    /// (<paramref name="index"/>: sequence index per slot, −1 = empty; <paramref name="scores"/>: their errors) and
    /// returns the slot it now occupies, or −1 when it is not kept. The lowest empty slot is filled first.
    /// </summary>
    public static int Offer(Span<long> index, Span<float> scores, long pair, float score)
    {
        if (float.IsNaN(score))
            return -1;
        int victim = -1;
        for (int s = 0; s < index.Length; s++)
        {
            if (index[s] < 0)
            {
                victim = s;
                break;
            }

            if (victim < 0 || scores[s] < scores[victim] || (scores[s] == scores[victim] && index[s] < index[victim]))
                victim = s;
        }

        // Slots only ever hold older pairs, so on equal error the offered (newer) pair wins.
        if (victim < 0 || (index[victim] >= 0 && score < scores[victim]))
            return -1;
        index[victim] = pair;
        scores[victim] = score;
        return victim;
    }

    /// <summary>
    /// Runs the rule over one call of T tokens, the way stepping would: after query <c>t = written + i</c> the pair
    /// <c>t − ring</c> leaves the window (<c>ring = window − 1</c>) and is offered, so queries <c>i + 1</c> on see it.
    /// Slots <paramref name="slotIndex"/>, <paramref name="slotScore"/> <c>[B, H_kv, N]</c> as the cache holds them;
    /// ring errors <paramref name="ringScore"/> <c>[B, H_kv, ring]</c> and validity <paramref name="ringValid"/>
    /// <c>[B, ring]</c> (slot = sequence index mod ring); the new tokens' errors <paramref name="newScore"/>
    /// <c>[B, H_kv, T]</c> and validity <paramref name="newValid"/> <c>[B, T]</c>. Padding is never offered.
    /// </summary>
    public static SparseSelection Simulate(int batch, int kvHeads, int capacity, int ring, long written, int t,
        long[] slotIndex, float[] slotScore, float[] ringScore, bool[] ringValid, float[] newScore, bool[] newValid)
    {
        int n = capacity, pool = n + ring + t;
        var enter = new long[batch * kvHeads * pool];
        var exit = new long[batch * kvHeads * pool];
        var slotPool = new long[batch * kvHeads * n];
        var index = (long[])slotIndex.Clone();
        var scores = (float[])slotScore.Clone();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < kvHeads; h++)
            {
                int unit = b * kvHeads + h;
                var idx = index.AsSpan(unit * n, n);
                var sc = scores.AsSpan(unit * n, n);
                var owner = slotPool.AsSpan(unit * n, n);
                var en = enter.AsSpan(unit * pool, pool);
                var ex = exit.AsSpan(unit * pool, pool);
                for (int s = 0; s < n; s++)
                {
                    owner[s] = idx[s] >= 0 ? s : -1;
                    if (idx[s] >= 0)
                        ex[s] = t; // enter 0: visible from the first query
                }

                for (int i = 0; i < t; i++)
                {
                    long pair = written + i - ring;
                    if (pair < 0)
                        continue;
                    int entry;
                    float score;
                    bool valid;
                    if (pair >= written)
                    {
                        int j = (int)(pair - written);
                        (entry, score, valid) = (n + ring + j, newScore[unit * t + j], newValid[b * t + j]);
                    }
                    else
                    {
                        int r = (int)(pair % ring);
                        (entry, score, valid) = (n + r, ringScore[unit * ring + r], ringValid[b * ring + r]);
                    }

                    if (!valid)
                        continue;
                    int slot = Offer(idx, sc, pair, score);
                    if (slot < 0)
                        continue;
                    if (owner[slot] >= 0)
                        ex[(int)owner[slot]] = i + 1;
                    owner[slot] = entry;
                    en[entry] = i + 1;
                    ex[entry] = t;
                }
            }

        return new SparseSelection(pool, enter, exit, slotPool, index, scores);
    }
}
