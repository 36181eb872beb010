using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Activation rows rounded to bfloat16 for <see cref="EngineOptions.BFloat16Products"/>: what llama.cpp does before
/// <c>ggml_vec_dot_bf16</c> (its <c>vec_dot_type</c> for BF16 weights is BF16), so a bfloat16 matrix multiplies
/// bfloat16 by bfloat16 with <c>vdpbf16ps</c> (<see cref="MatMulBFloat16"/>). Each value is rounded to nearest even by
/// <see cref="PackedMatrix.ToBFloat16"/>'s rule (NaN stays a quiet NaN), once per product: every weight row and every
/// thread reads the same rounded rows. A reusable scratch buffer like <see cref="Q8Activations"/>: it grows and never
/// shrinks, so a step allocates nothing.
/// </summary>
/// <remarks>Rows start 64 bytes apart at least (<see cref="Stride"/> is a whole number of 32-value blocks) and the
/// padding is zero, so a row's blocks are aligned loads. With several rows, each is also kept <i>split</i>
/// (<see cref="Split"/>): the rounded values as float32, each 16-value half of a 32-value block stored as its 8 odd
/// values, then its 8 even ones — the two operands <c>vdpbf16ps</c> takes from each pair — so the managed tiles that stand
/// in for that instruction (<see cref="BFloat16Tile2x4"/>) load them ready, where splitting each pair for every weight
/// row would double the tile's instructions.</remarks>
public sealed unsafe class BFloat16Activations : IDisposable
{
    private ushort* _values;
    private long _capacity;
    private float* _split;
    private long _splitCapacity;

    /// <summary>Rows rounded by the last <see cref="Round"/>.</summary>
    public int Count { get; private set; }

    /// <summary>Values per row.</summary>
    public int Cols { get; private set; }

    /// <summary>Values from one row to the next: whole 32-value blocks.</summary>
    public int Stride => (Cols + BFloat16Dot.Block - 1) / BFloat16Dot.Block * BFloat16Dot.Block;

    /// <summary>Row <paramref name="row"/>'s bfloat16 bits.</summary>
    internal ushort* Row(int row) => _values + (long)row * Stride;

    /// <summary>Whether <see cref="Split"/> holds the rows (prepared for more than one row).</summary>
    internal bool HasSplit { get; private set; }

    /// <summary>Row <paramref name="row"/> split (see remarks): for the block at column <c>32k</c>, floats
    /// <c>32k + 16h .. +8</c> are the odd values of half <c>h</c> (columns <c>32k + 16h + 2i + 1</c>) and the next 8 its
    /// even ones; zero past <see cref="Cols"/>.</summary>
    internal float* Split(int row) => HasSplit ? _split + (long)row * Stride : throw new InvalidOperationException("rows are split only when more than one is prepared");

    /// <summary>Row <paramref name="row"/> as rounded (bit patterns).</summary>
    public ReadOnlySpan<ushort> RowBits(int row) =>
        (uint)row < (uint)Count ? new ReadOnlySpan<ushort>(Row(row), Cols) : throw new ArgumentOutOfRangeException(nameof(row));

    /// <summary>Rounds <paramref name="count"/> rows of <paramref name="cols"/> values at <paramref name="x"/> (stride
    /// <paramref name="xStride"/> floats).</summary>
    public void Round(float* x, int xStride, int count, int cols)
    {
        Prepare(count, cols);
        RoundRows(x, xStride, 0, count);
    }

    /// <summary>Sizes the buffer for <paramref name="count"/> rows of <paramref name="cols"/> values, to be filled by
    /// <see cref="RoundRows"/> (the engine splits a prefill block's rows across threads).</summary>
    internal void Prepare(int count, int cols)
    {
        if (count < 0 || cols < 1)
            throw new ArgumentException($"cannot round {count} rows of {cols} values");
        Count = count;
        Cols = cols;
        HasSplit = count > 1;
        long values = (long)Math.Max(1, count) * Stride;
        if (values > _capacity)
        {
            NativeMemory.AlignedFree(_values);
            _values = (ushort*)NativeMemory.AlignedAlloc((nuint)(values * sizeof(ushort)), 64);
            _capacity = values;
        }

        if (HasSplit && values > _splitCapacity)
        {
            NativeMemory.AlignedFree(_split);
            _split = (float*)NativeMemory.AlignedAlloc((nuint)(values * sizeof(float)), 64);
            _splitCapacity = values;
        }
    }

    /// <summary>Rounds rows <c>[from, to)</c> after <see cref="Prepare"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void RoundRows(float* x, int xStride, int from, int to)
    {
        int cols = Cols, stride = Stride;
        for (int r = from; r < to; r++)
        {
            float* xr = x + (long)r * xStride;
            ushort* q = Row(r);
            int c = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; c + 16 <= cols; c += 16)
                    Vector256.Narrow(Round8(Vector256.Load(xr + c)), Round8(Vector256.Load(xr + c + 8))).Store(q + c);
            for (; c < cols; c++)
                q[c] = PackedMatrix.ToBFloat16(xr[c]);
            for (; c < stride; c++)
                q[c] = 0;
            if (HasSplit)
                SplitRow(q, Split(r), stride);
        }
    }

    /// <summary>One rounded row into the split layout: per 16-value half, the high halves of its 8 (even, odd) pairs as
    /// float32 (the odd values), then the low halves shifted up (the even ones).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SplitRow(ushort* q, float* split, int stride)
    {
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; c < stride; c += 16)
            {
                var pairs = Vector256.Load((uint*)(q + c));
                (pairs & Vector256.Create(0xFFFF0000u)).AsSingle().Store(split + c);
                (pairs << 16).AsSingle().Store(split + c + 8);
            }

        for (; c < stride; c += 16)
            for (int i = 0; i < 8; i++)
            {
                split[c + i] = PackedMatrix.FromBFloat16(q[c + 2 * i + 1]);
                split[c + 8 + i] = PackedMatrix.FromBFloat16(q[c + 2 * i]);
            }
    }

    /// <summary><see cref="PackedMatrix.ToBFloat16"/> on eight lanes (the result in each lane's low 16 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Round8(Vector256<float> v)
    {
        var bits = v.AsUInt32();
        var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256.Create(1u))) >> 16;
        var nan = (bits >> 16) | Vector256.Create(0x40u);
        return Vector256.ConditionalSelect(Vector256.Equals(v, v).AsUInt32(), rounded, nan);
    }

    ~BFloat16Activations() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        NativeMemory.AlignedFree(_values);
        _values = null;
        _capacity = 0;
        NativeMemory.AlignedFree(_split);
        _split = null;
        _splitCapacity = 0;
    }
}
