using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Activation rows quantized to Q8 blocks for a product with a <see cref="WeightFormat.Q8"/> matrix — what llama.cpp
/// does before <c>ggml_vec_dot_q8_0_q8_0</c> (its <c>vec_dot_type</c> for Q8_0 is Q8_0): each run of
/// <see cref="PackedMatrix.Q8BlockSize"/> values of a row becomes int8 <c>round(x / d)</c> with <c>d = max|x| / 127</c>,
/// exactly <see cref="PackedMatrix.QuantizeBlock"/>'s rule, so the dot product of a block is a sum of int8 × int8
/// products (<see cref="MatVecQ8"/>). A reusable scratch buffer: the engine quantizes each activation row once per
/// product and every weight row (and every thread) reads it; it grows and never shrinks, so a step allocates nothing.
/// </summary>
/// <remarks>Rows are padded to whole blocks with zero quants (a row's stride is <see cref="RowBytes"/>), so a partial
/// last block may be read as a whole vector on the activation side.</remarks>
public sealed unsafe class Q8Activations : IDisposable
{
    private sbyte* _quants;
    private float* _scales;
    private long _quantCapacity, _scaleCapacity;

    /// <summary>Rows quantized by the last <see cref="Quantize"/>.</summary>
    public int Count { get; private set; }

    /// <summary>Values per row.</summary>
    public int Cols { get; private set; }

    public int BlocksPerRow => (Cols + PackedMatrix.Q8BlockSize - 1) / PackedMatrix.Q8BlockSize;

    /// <summary>Bytes from one row's quants to the next: whole blocks.</summary>
    internal int RowBytes => BlocksPerRow * PackedMatrix.Q8BlockSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal sbyte* Quants(int row) => _quants + (long)row * RowBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal float* Scales(int row) => _scales + (long)row * BlocksPerRow;

    /// <summary>Quantizes <paramref name="count"/> rows of <paramref name="cols"/> values at <paramref name="x"/>
    /// (stride <paramref name="xStride"/> floats).</summary>
    public void Quantize(float* x, int xStride, int count, int cols)
    {
        Prepare(count, cols);
        QuantizeRows(x, xStride, 0, count);
    }

    /// <summary>Sizes the buffer for <paramref name="count"/> rows of <paramref name="cols"/> values, to be filled by
    /// <see cref="QuantizeRows"/> (the engine splits the rows of a long prompt across threads).</summary>
    internal void Prepare(int count, int cols)
    {
        if (count < 0 || cols < 1)
            throw new ArgumentException($"cannot quantize {count} rows of {cols} values");
        Count = count;
        Cols = cols;
        long quants = (long)Math.Max(1, count) * RowBytes, scales = (long)Math.Max(1, count) * BlocksPerRow;
        if (quants > _quantCapacity)
        {
            NativeMemory.AlignedFree(_quants);
            _quants = (sbyte*)NativeMemory.AlignedAlloc((nuint)quants, 64);
            _quantCapacity = quants;
        }

        if (scales > _scaleCapacity)
        {
            NativeMemory.AlignedFree(_scales);
            _scales = (float*)NativeMemory.AlignedAlloc((nuint)(scales * sizeof(float)), 64);
            _scaleCapacity = scales;
        }
    }

    /// <summary>Quantizes rows <c>[from, to)</c> after <see cref="Prepare"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void QuantizeRows(float* x, int xStride, int from, int to)
    {
        const int block = PackedMatrix.Q8BlockSize;
        int cols = Cols, full = cols / block, blocks = BlocksPerRow;
        for (int r = from; r < to; r++)
        {
            float* xr = x + (long)r * xStride;
            sbyte* q = Quants(r);
            float* d = Scales(r);
            int b = 0;
            if (Avx2.IsSupported)
                for (; b < full; b++)
                    d[b] = QuantizeBlock256(xr + b * block, q + b * block);
            for (; b < blocks; b++)
            {
                int start = b * block, n = Math.Min(block, cols - start);
                var dest = new Span<sbyte>(q + start, block);
                dest.Slice(n).Clear();
                d[b] = PackedMatrix.QuantizeBlock(new ReadOnlySpan<float>(xr + start, n), dest);
            }
        }
    }

    /// <summary>Row <paramref name="row"/> as the float32 values its quants stand for (<c>q · d</c>).</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Count)
            throw new ArgumentOutOfRangeException(nameof(row));
        sbyte* q = Quants(row);
        float* d = Scales(row);
        for (int c = 0; c < Cols; c++)
            destination[c] = q[c] * d[c / PackedMatrix.Q8BlockSize];
    }

    /// <summary>
    /// One full block with AVX2, bit for bit <see cref="PackedMatrix.QuantizeBlock"/>: the same <c>d</c> and
    /// <c>1 / d</c> (scalar), the same products <c>x · (1 / d)</c>, and rounding half away from zero done exactly —
    /// truncate, then step away from zero where the dropped fraction is at least one half (the fraction
    /// <c>v − trunc(v)</c> is exact). ggml's AVX <c>quantize_row_q8_0</c> rounds half to even instead; the rule here
    /// is its reference <c>quantize_row_q8_0_ref</c>, which the weights were packed with. The int32 → int8 packing
    /// is ggml's: two saturating packs interleave 128-bit lanes, and a permutation restores the order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float QuantizeBlock256(float* x, sbyte* q)
    {
        var v0 = Vector256.Load(x);
        var v1 = Vector256.Load(x + 8);
        var v2 = Vector256.Load(x + 16);
        var v3 = Vector256.Load(x + 24);
        var max = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
        var m128 = Vector128.Max(max.GetLower(), max.GetUpper());
        m128 = Vector128.Max(m128, Vector128.Shuffle(m128, Vector128.Create(2, 3, 0, 1)));
        m128 = Vector128.Max(m128, Vector128.Shuffle(m128, Vector128.Create(1, 0, 3, 2)));
        float amax = m128.ToScalar();
        float d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        var scale = Vector256.Create(id);
        var i0 = Avx.ConvertToVector256Int32WithTruncation(RoundAway(v0 * scale));
        var i1 = Avx.ConvertToVector256Int32WithTruncation(RoundAway(v1 * scale));
        var i2 = Avx.ConvertToVector256Int32WithTruncation(RoundAway(v2 * scale));
        var i3 = Avx.ConvertToVector256Int32WithTruncation(RoundAway(v3 * scale));
        var packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
        Avx2.PermuteVar8x32(packed.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte().Store(q);
        return d;
    }

    /// <summary><c>MathF.Round(v, MidpointRounding.AwayFromZero)</c> lane by lane, exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RoundAway(Vector256<float> v)
    {
        var t = Avx.RoundToZero(v);
        var half = Vector256.GreaterThanOrEqual(Vector256.Abs(v - t), Vector256.Create(0.5f));
        var step = Vector256.BitwiseOr(Vector256.BitwiseAnd(v, Vector256.Create(-0f)), Vector256.Create(1f));
        return t + Vector256.BitwiseAnd(half, step);
    }

    ~Q8Activations() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        NativeMemory.AlignedFree(_quants);
        NativeMemory.AlignedFree(_scales);
        _quants = null;
        _scales = null;
        _quantCapacity = _scaleCapacity = 0;
    }
}
