using Linearize.Caching;
using Linearize.Inference.Mixers;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// An engine <see cref="LayerState"/> beside the TorchSharp <see cref="ILayerCache"/> it twins, as named pairs of
/// (expected, actual) float arrays read independently from each side (not through the mixers' own hand-over): the KV
/// cache's keys and values; a window's visible keys and values (sinks, then the ring, by position) and its recurrent
/// state(s); a LoLCATs layer's unfolded keys and values, its linear state and any sparse slots. A drift then names the part that drifted.
/// </summary>
internal static unsafe class MixerStateParts
{
    public static IReadOnlyList<(string Part, float[] Expected, float[] Actual)> Pairs(ILayerCache? cache, LayerState state, long seen)
    {
        using var scope = NewDisposeScope();
        return (cache, state) switch
        {
            (KvCache kv, KvState s) => KvParts(kv, s, seen),
            (LinearLayerCache linear, WindowState s) => WindowParts(linear, s, seen),
            (LolcatsLayerCache lolcats, LolcatsState s) => LolcatsParts(lolcats, s),
            _ => throw new InvalidOperationException($"no comparison of a {cache?.GetType().Name ?? "missing cache"} with a {state.GetType().Name}"),
        };
    }

    private static float[] Floats(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();

    private static float[] Copy(float* from, long count) => new ReadOnlySpan<float>(from, (int)count).ToArray();

    private static List<(string, float[], float[])> KvParts(KvCache cache, KvState state, long seen)
    {
        Assert.Equal(seen, cache.Length);
        Assert.Equal(seen, state.Length);
        var (keys, values) = cache.Read(); // [1, H_kv, S, D]
        int d = keys.shape.Length == 4 ? (int)keys.shape[3] : 0, hkv = (int)keys.shape[1];
        var k = new List<float>();
        var v = new List<float>();
        for (int h = 0; h < hkv; h++)
        {
            k.AddRange(Copy(state.Key(h, 0), seen * d));
            v.AddRange(Copy(state.Value(h, 0), seen * d));
        }

        return new() { ("kv cache keys", Floats(keys[0]), k.ToArray()), ("kv cache values", Floats(values[0]), v.ToArray()) };
    }

    /// <summary>The positions the next query sees, with the cache's entry index for each: sinks, then the ring.</summary>
    private static List<(string, float[], float[])> WindowParts(LinearLayerCache cache, WindowState state, long seen)
    {
        var parts = new List<(string, float[], float[])>();
        if (cache.Window.Context() is { } context)
        {
            var positions = context.Positions[0].data<long>().ToArray();
            var valid = context.Valid[0].data<bool>().ToArray();
            var keys = Floats(context.Keys[0]);   // [H_kv, L, D]
            var values = Floats(context.Values[0]);
            int length = positions.Length, d = state.HeadDim;
            var visible = Enumerable.Range(0, length).Where(e => valid[e]).OrderBy(e => positions[e]).ToArray();
            long sinks = Math.Min(state.Sinks, seen);
            var expectedPositions = Enumerable.Range(0, (int)sinks).Select(p => (long)p)
                .Concat(Enumerable.Range(0, (int)seen).Select(p => (long)p).Where(p => p >= Math.Max(state.Sinks, seen - state.Ring)));
            Assert.Equal(expectedPositions, visible.Select(e => positions[e]));
            var ek = new List<float>();
            var ev = new List<float>();
            var ak = new List<float>();
            var av = new List<float>();
            for (int h = 0; h < state.KvHeads; h++)
                foreach (int e in visible)
                {
                    long p = positions[e];
                    ek.AddRange(keys.AsSpan((h * length + e) * d, d).ToArray());
                    ev.AddRange(values.AsSpan((h * length + e) * d, d).ToArray());
                    ak.AddRange(Copy(p < state.Sinks ? state.SinkKey(h, p) : state.RingKey(h, p), d));
                    av.AddRange(Copy(p < state.Sinks ? state.SinkValue(h, p) : state.RingValue(h, p), d));
                }

            parts.Add(("window keys", ek.ToArray(), ak.ToArray()));
            parts.Add(("window values", ev.ToArray(), av.ToArray()));
        }

        if (cache.Sparse is { Keys: { } sparseKeys } sparse)
        {
            parts.Add(("sparse keys", Floats(sparseKeys[0]), Copy(state.SparseKeys.Pointer, state.SparseKeys.Length)));
            parts.Add(("sparse values", Floats(sparse.Values![0]), Copy(state.SparseValues.Pointer, state.SparseValues.Length)));
            parts.Add(("sparse errors", Floats(sparse.Score![0]), Copy(state.SparseScores.Pointer, state.SparseScores.Length)));
            parts.Add(("sparse positions", Floats(sparse.Index![0]), state.SparseIndex.Select(i => (float)i).ToArray()));
            parts.Add(("ring errors", Floats(sparse.RingScore![0]), Copy(state.RingScores.Pointer, state.RingScores.Length)));
        }
        else if (cache.Sparse is null)
        {
            Assert.Equal(0, state.Sparse);
        }

        if (cache.State is { } main)
            parts.Add(("recurrent state", Floats(main[0]), Copy(state.Recurrent.Pointer, state.Recurrent.Length)));
        else
            Assert.Equal(0L, state.Recurrent.Length); // only the window: no recurrent state on either side
        if (cache.SlotValueState is { } slots)
            parts.Add(("slot value state", Floats(slots[0]), Copy(state.SlotValues.Pointer, state.SlotValues.Length)));
        else
            Assert.Equal(0L, state.SlotValues.Length);
        return parts;
    }

    /// <summary>The keys not yet folded into the linear state (positions from the cache's frontier on), then the state.</summary>
    private static List<(string, float[], float[])> LolcatsParts(LolcatsLayerCache cache, LolcatsState state)
    {
        var (keysT, valuesT, positionsT, validT) = cache.Context()!.Value;
        var positions = positionsT[0].data<long>().ToArray();
        var valid = validT[0].data<bool>().ToArray();
        var keys = Floats(keysT[0]); // [H_kv, C, D]
        var values = Floats(valuesT[0]);
        int length = positions.Length, d = state.HeadDim;
        var ek = new List<float>();
        var ev = new List<float>();
        var ak = new List<float>();
        var av = new List<float>();
        for (int h = 0; h < state.KvHeads; h++)
            for (int e = 0; e < length; e++)
            {
                if (!valid[e])
                    continue;
                ek.AddRange(keys.AsSpan((h * length + e) * d, d).ToArray());
                ev.AddRange(values.AsSpan((h * length + e) * d, d).ToArray());
                ak.AddRange(Copy(state.Key(h, positions[e]), d));
                av.AddRange(Copy(state.Value(h, positions[e]), d));
            }

        Assert.True(ek.Count > 0, "the LoLCATs cache holds no unfolded key");
        var parts = new List<(string, float[], float[])>
        {
            ("window keys", ek.ToArray(), ak.ToArray()),
            ("window values", ev.ToArray(), av.ToArray()),
            ("linear state", Floats(cache.State![0]), Copy(state.Linear.Pointer, state.Linear.Length)),
        };
        if (cache.Sparse is { Keys: { } sparseKeys } sparse)
        {
            parts.Add(("sparse keys", Floats(sparseKeys[0]), Copy(state.SparseKeys.Pointer, state.SparseKeys.Length)));
            parts.Add(("sparse values", Floats(sparse.Values![0]), Copy(state.SparseValues.Pointer, state.SparseValues.Length)));
            parts.Add(("sparse errors", Floats(sparse.Score![0]), Copy(state.SparseScores.Pointer, state.SparseScores.Length)));
            parts.Add(("sparse positions", Floats(sparse.Index![0]), state.SparseIndex.Select(i => (float)i).ToArray()));
        }
        else
        {
            Assert.Equal(0, state.Sparse);
        }

        return parts;
    }
}
