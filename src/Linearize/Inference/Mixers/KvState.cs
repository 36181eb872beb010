namespace Linearize.Inference.Mixers;

/// <summary>
/// A softmax layer's KV cache for one sequence: post-RoPE keys and values, each <c>[H_kv, capacity, D]</c> so a KV
/// head's positions are contiguous (one stream per head when attending). Capacity doubles, so appending is O(1)
/// amortised; <see cref="StateBytes"/> counts the filled part, as the TorchSharp cache does.
/// </summary>
internal sealed unsafe class KvState : LayerState
{
    private readonly int _kvHeads;
    private readonly int _headDim;

    public KvState(int kvHeads, int headDim, int capacity = 64)
    {
        _kvHeads = kvHeads;
        _headDim = headDim;
        Capacity = Math.Max(1, capacity);
        Keys = new FloatBuffer((long)kvHeads * Capacity * headDim);
        Values = new FloatBuffer((long)kvHeads * Capacity * headDim);
    }

    public FloatBuffer Keys { get; private set; }

    public FloatBuffer Values { get; private set; }

    public int Capacity { get; private set; }

    public int Length { get; set; }

    public override long StateBytes => 2L * Length * _kvHeads * _headDim * sizeof(float);

    public float* Key(int kvHead, int position) => Keys.Pointer + ((long)kvHead * Capacity + position) * _headDim;

    public float* Value(int kvHead, int position) => Values.Pointer + ((long)kvHead * Capacity + position) * _headDim;

    /// <summary>Room for <paramref name="length"/> positions; head blocks move to their new offsets.</summary>
    public void EnsureCapacity(int length)
    {
        if (length <= Capacity)
            return;
        int capacity = Math.Max(length, Capacity * 2);
        Keys = Regrow(Keys, capacity);
        Values = Regrow(Values, capacity);
        Capacity = capacity;
    }

    private FloatBuffer Regrow(FloatBuffer old, int capacity)
    {
        var fresh = new FloatBuffer((long)_kvHeads * capacity * _headDim);
        long bytes = (long)Length * _headDim * sizeof(float);
        for (int h = 0; h < _kvHeads; h++)
            Buffer.MemoryCopy(old.Pointer + (long)h * Capacity * _headDim, fresh.Pointer + (long)h * capacity * _headDim, bytes, bytes);
        old.Dispose();
        return fresh;
    }

    public override void FillSynthetic(long tokens, Random random)
    {
        EnsureCapacity((int)tokens);
        Length = (int)tokens;
        FillRandom(Keys, random);
        FillRandom(Values, random);
    }

    public override LayerState Clone()
    {
        var copy = new KvState(_kvHeads, _headDim, 1) { Length = Length, Capacity = Capacity };
        copy.Keys.Dispose();
        copy.Values.Dispose();
        copy.Keys = Keys.Clone();
        copy.Values = Values.Clone();
        return copy;
    }

    public override void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}
