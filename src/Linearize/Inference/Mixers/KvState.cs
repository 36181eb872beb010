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

    /// <summary>
    /// Positions of a reservation backed with memory ahead of being written, at least (<see cref="EnsureCapacity"/>).
    /// Written page by page, a prompt of 512 tokens took one page fault per 16 positions per head of every layer —
    /// about 9,000 per prefill of stories110m — and on a virtual machine a first touch is costly: `perf` put the faults
    /// and the copies that took them at about a fifth of a 512-token prefill. Backing each head's next positions in one
    /// call avoids the faults. A prompt's positions are backed as a whole; decoding backs this many positions at a time
    /// as it reaches them (memory those positions would take anyway, at most this many early).
    /// </summary>
    public const int PopulatePositions = 256;

    private int _populated; // positions [0, _populated) of a reservation are backed

    /// <summary>Room for <paramref name="length"/> positions; head blocks move to their new offsets. Within a reservation,
    /// the positions up to <paramref name="length"/> are backed now, in steps of at least <see cref="PopulatePositions"/>.</summary>
    public void EnsureCapacity(int length)
    {
        if (length > Capacity)
        {
            int capacity = Math.Max(length, Capacity * 2);
            Keys = Regrow(Keys, capacity);
            Values = Regrow(Values, capacity);
            Capacity = capacity;
        }

        if (Keys.IsReserved && length > _populated)
        {
            int end = Math.Min(Capacity, Math.Max(length, _populated + PopulatePositions));
            for (int h = 0; h < _kvHeads; h++)
            {
                long first = ((long)h * Capacity + _populated) * _headDim, count = (long)(end - _populated) * _headDim;
                Keys.Populate(first, count);
                Values.Populate(first, count);
            }

            _populated = end;
        }
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
