namespace Linearize.Inference.Mixers;

/// <summary>
/// A softmax layer's KV cache for one sequence: post-RoPE keys and values, each <c>[H_kv, capacity, D]</c> so a KV
/// head's positions are contiguous (one stream per head when attending). <see cref="StateBytes"/> counts the filled
/// part, as the TorchSharp cache does.
/// <para>Capacity is reserved up front for the model's whole context (<see cref="FloatBuffer.TryReserve"/>: address
/// space only; memory is taken page by page as positions are written), so appending never moves the cache. Moving it
/// is what a doubling array does, and each doubling stalled one decoding step on a copy of every layer's cache into
/// freshly cleared memory (~0.1 s at 256 positions on stories110m, seconds at 8K). Past the reservation (or where the OS
/// offers none) capacity doubles as before.</para>
/// </summary>
internal sealed unsafe class KvState : LayerState
{
    private readonly int _kvHeads;
    private readonly int _headDim;

    /// <param name="reservePositions">Positions to reserve address space for (the model's context); 0 allocates
    /// <see cref="InitialCapacity"/> positions and doubles from there.</param>
    public KvState(int kvHeads, int headDim, int reservePositions = 0)
    {
        _kvHeads = kvHeads;
        _headDim = headDim;
        if (reservePositions > 0 && FloatBuffer.TryReserve((long)kvHeads * reservePositions * headDim) is { } keys)
        {
            if (FloatBuffer.TryReserve((long)kvHeads * reservePositions * headDim) is { } values)
            {
                (Keys, Values, Capacity, _reserved) = (keys, values, reservePositions, reservePositions);
                return;
            }

            keys.Dispose();
        }

        Capacity = InitialCapacity;
        Keys = new FloatBuffer((long)kvHeads * Capacity * headDim);
        Values = new FloatBuffer((long)kvHeads * Capacity * headDim);
    }

    /// <summary>Positions allocated at first without a reservation.</summary>
    public const int InitialCapacity = 64;

    private readonly int _reserved; // positions reserved at creation (a clone reserves as many)

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
        int n = Length * _headDim; // the filled positions only: a reserved cache's other pages stay untouched
        for (int h = 0; h < _kvHeads; h++)
        {
            FillRandom(new Span<float>(Key(h, 0), n), random);
            FillRandom(new Span<float>(Value(h, 0), n), random);
        }
    }

    /// <summary>A copy of the filled positions (a reserved cache's untouched pages stay untouched).</summary>
    public override LayerState Clone()
    {
        var copy = new KvState(_kvHeads, _headDim, Math.Max(_reserved, Length));
        copy.EnsureCapacity(Length);
        copy.Length = Length;
        long bytes = (long)Length * _headDim * sizeof(float);
        for (int h = 0; h < _kvHeads; h++)
        {
            Buffer.MemoryCopy(Key(h, 0), copy.Key(h, 0), bytes, bytes);
            Buffer.MemoryCopy(Value(h, 0), copy.Value(h, 0), bytes, bytes);
        }

        return copy;
    }

    public override void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}
