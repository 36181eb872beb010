namespace Linearize.Inference.Mixers;

/// <summary>
/// A LoLCATs layer's state for one sequence: a ring of the last <c>capacity</c> post-RoPE keys/values (position p in
/// slot <c>p mod capacity</c>; w for the sliding window, 2w for the terrace) and the linear state
/// <c>S = Σ φk [v, 1]ᵀ</c> <c>[H, F, D + 1]</c> in float32 over every key that has left the window. With a sparse cache
/// (LoLA, docs/METHODS.md §1.7): per KV head N slots of evicted keys/values <c>[H_kv, N, D]</c>, kept out of S, with each
/// pair's position (−1 = empty) and recall error <c>[H_kv, N]</c>. Fixed size.
/// </summary>
internal sealed unsafe class LolcatsState : LayerState
{
    public LolcatsState(int kvHeads, int headDim, int capacity, int heads, int features, int sparse = 0)
        : this(kvHeads, headDim, capacity, heads, features, new FloatBuffer((long)kvHeads * capacity * headDim),
            new FloatBuffer((long)kvHeads * capacity * headDim), new FloatBuffer((long)heads * features * (headDim + 1)),
            new FloatBuffer((long)kvHeads * sparse * headDim), new FloatBuffer((long)kvHeads * sparse * headDim),
            new FloatBuffer((long)kvHeads * sparse), Enumerable.Repeat(-1L, kvHeads * sparse).ToArray())
    {
    }

    private LolcatsState(int kvHeads, int headDim, int capacity, int heads, int features, FloatBuffer keys, FloatBuffer values,
        FloatBuffer linear, FloatBuffer sparseKeys, FloatBuffer sparseValues, FloatBuffer sparseScores, long[] sparseIndex)
    {
        KvHeads = kvHeads;
        HeadDim = headDim;
        Capacity = capacity;
        Heads = heads;
        Features = features;
        Keys = keys;
        Values = values;
        Linear = linear;
        Sparse = kvHeads == 0 ? 0 : sparseIndex.Length / kvHeads;
        SparseKeys = sparseKeys;
        SparseValues = sparseValues;
        SparseScores = sparseScores;
        SparseIndex = sparseIndex;
    }

    public int KvHeads { get; }

    public int HeadDim { get; }

    public int Capacity { get; }

    public int Heads { get; }

    public int Features { get; }

    public FloatBuffer Keys { get; }

    public FloatBuffer Values { get; }

    /// <summary><c>[H, F, D + 1]</c>: the last column is the key state Σ φk.</summary>
    public FloatBuffer Linear { get; }

    /// <summary>Sparse-cache slots per KV head (0 = none).</summary>
    public int Sparse { get; }

    public FloatBuffer SparseKeys { get; }

    public FloatBuffer SparseValues { get; }

    /// <summary>Each slot's recall error <c>[H_kv, N]</c>.</summary>
    public FloatBuffer SparseScores { get; }

    /// <summary>Each slot's position <c>[H_kv, N]</c>; −1 = empty.</summary>
    public long[] SparseIndex { get; }

    public override long StateBytes => Keys.Bytes + Values.Bytes + Linear.Bytes +
                                       SparseKeys.Bytes + SparseValues.Bytes + SparseScores.Bytes + SparseIndex.LongLength * sizeof(long);

    public float* Key(int kvHead, long position) => Keys.Pointer + ((long)kvHead * Capacity + position % Capacity) * HeadDim;

    public float* Value(int kvHead, long position) => Values.Pointer + ((long)kvHead * Capacity + position % Capacity) * HeadDim;

    public float* LinearState(int head) => Linear.Pointer + (long)head * Features * (HeadDim + 1);

    public float* SparseKey(int kvHead, int slot) => SparseKeys.Pointer + ((long)kvHead * Sparse + slot) * HeadDim;

    public float* SparseValue(int kvHead, int slot) => SparseValues.Pointer + ((long)kvHead * Sparse + slot) * HeadDim;

    public override void FillSynthetic(long tokens, Random random)
    {
        foreach (var b in new[] { Keys, Values, Linear, SparseKeys, SparseValues, SparseScores })
            FillRandom(b, random);
        // After this many tokens, the slots hold pairs from before the window (or stay empty if none has left it).
        for (int i = 0; i < SparseIndex.Length; i++)
            SparseIndex[i] = i % Math.Max(1, Sparse) < tokens - Capacity ? i % Math.Max(1, Sparse) : -1;
    }

    public override LayerState Clone() =>
        new LolcatsState(KvHeads, HeadDim, Capacity, Heads, Features, Keys.Clone(), Values.Clone(), Linear.Clone(),
            SparseKeys.Clone(), SparseValues.Clone(), SparseScores.Clone(), (long[])SparseIndex.Clone());

    public override void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
        Linear.Dispose();
        SparseKeys.Dispose();
        SparseValues.Dispose();
        SparseScores.Dispose();
    }
}
