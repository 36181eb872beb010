namespace Linearize.Inference.Mixers;

/// <summary>
/// A LoLCATs layer's state for one sequence: a ring of the last <c>capacity</c> post-RoPE keys/values (position p in
/// slot <c>p mod capacity</c>; w for the sliding window, 2w for the terrace) and the linear state
/// <c>S = Σ φk [v, 1]ᵀ</c> <c>[H, F, D + 1]</c> in float32 over every key that has left the window. Fixed size.
/// </summary>
internal sealed unsafe class LolcatsState : LayerState
{
    public LolcatsState(int kvHeads, int headDim, int capacity, int heads, int features)
        : this(kvHeads, headDim, capacity, heads, features, new FloatBuffer((long)kvHeads * capacity * headDim),
            new FloatBuffer((long)kvHeads * capacity * headDim), new FloatBuffer((long)heads * features * (headDim + 1)))
    {
    }

    private LolcatsState(int kvHeads, int headDim, int capacity, int heads, int features, FloatBuffer keys, FloatBuffer values,
        FloatBuffer linear)
    {
        KvHeads = kvHeads;
        HeadDim = headDim;
        Capacity = capacity;
        Heads = heads;
        Features = features;
        Keys = keys;
        Values = values;
        Linear = linear;
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

    public override long StateBytes => Keys.Bytes + Values.Bytes + Linear.Bytes;

    public float* Key(int kvHead, long position) => Keys.Pointer + ((long)kvHead * Capacity + position % Capacity) * HeadDim;

    public float* Value(int kvHead, long position) => Values.Pointer + ((long)kvHead * Capacity + position % Capacity) * HeadDim;

    public float* LinearState(int head) => Linear.Pointer + (long)head * Features * (HeadDim + 1);

    public override void FillSynthetic(long tokens, Random random)
    {
        foreach (var b in new[] { Keys, Values, Linear })
            FillRandom(b, random);
    }

    public override LayerState Clone() =>
        new LolcatsState(KvHeads, HeadDim, Capacity, Heads, Features, Keys.Clone(), Values.Clone(), Linear.Clone());

    public override void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
        Linear.Dispose();
    }
}
