namespace Linearize.Inference.Mixers;

/// <summary>
/// A sliding-window layer's state for one sequence: a ring of the last <c>window − 1</c> post-RoPE keys/values
/// (position p in slot <c>p mod (window − 1)</c>; the window's last key is the current token's, which the step
/// holds), the first <c>sinks</c> keys/values kept for good, and, for Liger layers, the recurrent state(s) in float32:
/// GLA / scalar / delta-rule families <c>S [H, K, V]</c> (V + 1 columns with a denominator), GSA <c>Hk [H, K, M]</c> and
/// <c>Hv [H, M, V]</c>. With a sparse cache (LoLA, docs/METHODS.md §1.7): per KV head N slots of evicted keys/values
/// <c>[H_kv, N, D]</c> with each pair's position (−1 = empty) and recall error <c>[H_kv, N]</c>, and the recall errors of
/// the ring's pairs <c>[H_kv, window − 1]</c>. Fixed size: it does not grow with the context.
/// </summary>
internal sealed unsafe class WindowState : LayerState
{
    public WindowState(int kvHeads, int headDim, int ring, int sinks, long recurrentFloats, long slotValueFloats, int sparse = 0)
        : this(kvHeads, headDim, ring, sinks, new FloatBuffer((long)kvHeads * ring * headDim), new FloatBuffer((long)kvHeads * ring * headDim),
            new FloatBuffer((long)kvHeads * sinks * headDim), new FloatBuffer((long)kvHeads * sinks * headDim),
            new FloatBuffer(recurrentFloats), new FloatBuffer(slotValueFloats),
            new FloatBuffer((long)kvHeads * sparse * headDim), new FloatBuffer((long)kvHeads * sparse * headDim),
            new FloatBuffer((long)kvHeads * sparse), Enumerable.Repeat(-1L, kvHeads * sparse).ToArray(),
            new FloatBuffer(sparse > 0 ? (long)kvHeads * ring : 0))
    {
    }

    private WindowState(int kvHeads, int headDim, int ring, int sinks, FloatBuffer ringKeys, FloatBuffer ringValues,
        FloatBuffer sinkKeys, FloatBuffer sinkValues, FloatBuffer recurrent, FloatBuffer slotValues,
        FloatBuffer sparseKeys, FloatBuffer sparseValues, FloatBuffer sparseScores, long[] sparseIndex, FloatBuffer ringScores)
    {
        Sparse = kvHeads == 0 ? 0 : sparseIndex.Length / kvHeads;
        SparseKeys = sparseKeys;
        SparseValues = sparseValues;
        SparseScores = sparseScores;
        SparseIndex = sparseIndex;
        RingScores = ringScores;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Ring = ring;
        Sinks = sinks;
        RingKeys = ringKeys;
        RingValues = ringValues;
        SinkKeys = sinkKeys;
        SinkValues = sinkValues;
        Recurrent = recurrent;
        SlotValues = slotValues;
    }

    public int KvHeads { get; }

    public int HeadDim { get; }

    /// <summary>Ring slots: window − 1.</summary>
    public int Ring { get; }

    public int Sinks { get; }

    public FloatBuffer RingKeys { get; }

    public FloatBuffer RingValues { get; }

    public FloatBuffer SinkKeys { get; }

    public FloatBuffer SinkValues { get; }

    public FloatBuffer Recurrent { get; }

    public FloatBuffer SlotValues { get; }

    /// <summary>Sparse-cache slots per KV head (0 = none).</summary>
    public int Sparse { get; }

    public FloatBuffer SparseKeys { get; }

    public FloatBuffer SparseValues { get; }

    /// <summary>Each slot's recall error <c>[H_kv, N]</c>.</summary>
    public FloatBuffer SparseScores { get; }

    /// <summary>Each slot's position <c>[H_kv, N]</c>; −1 = empty.</summary>
    public long[] SparseIndex { get; }

    /// <summary>The recall error of each ring pair <c>[H_kv, window − 1]</c> (slot = position mod (window − 1)).</summary>
    public FloatBuffer RingScores { get; }

    public override long StateBytes =>
        RingKeys.Bytes + RingValues.Bytes + SinkKeys.Bytes + SinkValues.Bytes + Recurrent.Bytes + SlotValues.Bytes +
        SparseKeys.Bytes + SparseValues.Bytes + SparseScores.Bytes + SparseIndex.LongLength * sizeof(long) + RingScores.Bytes;

    public float* SparseKey(int kvHead, int slot) => SparseKeys.Pointer + ((long)kvHead * Sparse + slot) * HeadDim;

    public float* SparseValue(int kvHead, int slot) => SparseValues.Pointer + ((long)kvHead * Sparse + slot) * HeadDim;

    public float* RingScore(int kvHead, long position) => RingScores.Pointer + (long)kvHead * Ring + position % Ring;

    public float* RingKey(int kvHead, long position) => RingKeys.Pointer + ((long)kvHead * Ring + position % Ring) * HeadDim;

    public float* RingValue(int kvHead, long position) => RingValues.Pointer + ((long)kvHead * Ring + position % Ring) * HeadDim;

    public float* SinkKey(int kvHead, long position) => SinkKeys.Pointer + ((long)kvHead * Sinks + position) * HeadDim;

    public float* SinkValue(int kvHead, long position) => SinkValues.Pointer + ((long)kvHead * Sinks + position) * HeadDim;

    public override void FillSynthetic(long tokens, Random random)
    {
        foreach (var b in new[] { RingKeys, RingValues, SinkKeys, SinkValues, Recurrent, SlotValues, SparseKeys, SparseValues, SparseScores, RingScores })
            FillRandom(b, random);
        // After this many tokens, the slots hold pairs from before the window (or stay empty if none has left it).
        for (int i = 0; i < SparseIndex.Length; i++)
            SparseIndex[i] = i % Math.Max(1, Sparse) < tokens - Ring ? i % Math.Max(1, Sparse) : -1;
    }

    public override LayerState Clone() => new WindowState(KvHeads, HeadDim, Ring, Sinks, RingKeys.Clone(), RingValues.Clone(),
        SinkKeys.Clone(), SinkValues.Clone(), Recurrent.Clone(), SlotValues.Clone(),
        SparseKeys.Clone(), SparseValues.Clone(), SparseScores.Clone(), (long[])SparseIndex.Clone(), RingScores.Clone());

    public override void Dispose()
    {
        RingKeys.Dispose();
        RingValues.Dispose();
        SinkKeys.Dispose();
        SinkValues.Dispose();
        Recurrent.Dispose();
        SlotValues.Dispose();
        SparseKeys.Dispose();
        SparseValues.Dispose();
        SparseScores.Dispose();
        RingScores.Dispose();
    }
}
