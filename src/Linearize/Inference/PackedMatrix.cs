using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>
/// A weight matrix <c>[rows, cols]</c> (row-major, the layout of <c>nn.Linear.weight</c>) in a <see cref="WeightFormat"/>,
/// so a matrix-vector product streams it from memory exactly once. Three kinds of storage:
/// <list type="bullet">
/// <item><b>packed</b>: one contiguous 64-byte-aligned native buffer this matrix owns; Q8 keeps its float32 block scales
/// in a second buffer <c>[rows, ceil(cols / 32)]</c> (a row's last block may be partial);</item>
/// <item><b>in place</b>: rows that already are in the format where a file maps them (a safetensors bfloat16 or float32
/// <c>[out, in]</c> tensor, or a q8 checkpoint's quants and scales, <see cref="Q8Checkpoint"/>), borrowed, never copied:
/// the mapping's owner keeps them alive;</item>
/// <item><b>stacked</b>: parts with the same columns and format, their rows one after the other (q|k|v, gate|up), each
/// part packed or in place. Kernels run part by part (<see cref="Parts"/>), so a product over a stack computes every
/// row exactly as over the fused copy.</item>
/// </list>
/// </summary>
public sealed unsafe class PackedMatrix : IDisposable
{
    /// <summary>Weights per Q8 block (llama.cpp's <c>QK8_0</c>).</summary>
    public const int Q8BlockSize = 32;

    private void* _data;
    private float* _scales;
    private readonly bool _borrowed;
    private readonly PackedMatrix[]? _parts;

    private PackedMatrix(int rows, int cols, WeightFormat format, void* borrowed = null, PackedMatrix[]? parts = null,
        float* borrowedScales = null)
    {
        if (rows < 1 || cols < 1)
            throw new ArgumentException($"a packed matrix needs positive dimensions, got [{rows}, {cols}]");
        Rows = rows;
        Cols = cols;
        Format = format;
        _parts = parts;
        if (parts is not null)
            return;
        if (borrowed is not null)
        {
            _data = borrowed;
            _scales = borrowedScales;
            _borrowed = true;
            return;
        }

        _data = HugePages.Allocate(DataBytes);
        if (format == WeightFormat.Q8)
            _scales = (float*)NativeMemory.AlignedAlloc((nuint)((long)rows * BlocksPerRow * sizeof(float)), 64);
    }

    public int Rows { get; }

    public int Cols { get; }

    public WeightFormat Format { get; }

    /// <summary>Q8 blocks per row (the last may be partial).</summary>
    public int BlocksPerRow => (Cols + Q8BlockSize - 1) / Q8BlockSize;

    private long DataBytes => (long)Rows * Cols * Format switch
    {
        WeightFormat.Float32 => 4,
        WeightFormat.BFloat16 => 2,
        _ => 1,
    };

    /// <summary>Bytes a full product reads: the weights plus, for Q8, the scales.</summary>
    public long Bytes => _parts?.Sum(p => p.Bytes) ?? DataBytes + (Format == WeightFormat.Q8 ? (long)Rows * BlocksPerRow * sizeof(float) : 0);

    /// <summary>Of <see cref="Bytes"/>, those used in place from a mapped file rather than held in this process's own memory.</summary>
    public long InPlaceBytes => _parts?.Sum(p => p.InPlaceBytes) ?? (_borrowed ? Bytes : 0);

    /// <summary>Where this matrix's bytes lie (quants and block scales for Q8; every part of a stack), in the order a full
    /// product reads them: <see cref="Bytes"/> in all.</summary>
    internal IEnumerable<(nint Start, long Bytes)> Storage()
    {
        if (_parts is not null)
            return _parts.SelectMany(p => p.Storage());
        var spans = new List<(nint, long)> { ((nint)_data, DataBytes) };
        if (Format == WeightFormat.Q8)
            spans.Add(((nint)_scales, (long)Rows * BlocksPerRow * sizeof(float)));
        return spans;
    }

    /// <summary>The parts of a stacked matrix, in row order; null for a matrix with one storage.</summary>
    internal PackedMatrix[]? Parts => _parts;

    internal float* F32 => (float*)_data;

    internal ushort* Bf16 => (ushort*)_data;

    internal sbyte* Q8Data => (sbyte*)_data;

    internal float* Q8Scales => _scales;

    /// <summary>Packs <paramref name="weights"/> (row-major <c>[rows, cols]</c> float32) into <paramref name="format"/>.</summary>
    public static PackedMatrix Pack(ReadOnlySpan<float> weights, int rows, int cols, WeightFormat format)
    {
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"expected {(long)rows * cols} weights for [{rows}, {cols}], got {weights.Length}");
        var m = new PackedMatrix(rows, cols, format);
        for (int r = 0; r < rows; r++)
            m.PackRow(r, weights.Slice(r * cols, cols));
        return m;
    }

    /// <summary>An empty matrix to be filled with <see cref="PackRows"/>, for sources read a block of rows at a time.</summary>
    internal static PackedMatrix Allocate(int rows, int cols, WeightFormat format) => new(rows, cols, format);

    /// <summary>Rows stored at <paramref name="data"/> in <paramref name="format"/> already (row-major <c>[rows, cols]</c>;
    /// for Q8 the int8 quants, with their float32 block scales <c>[rows, ceil(cols / 32)]</c> at <paramref name="scales"/>),
    /// used where they are: the caller keeps the memory alive and unchanged for this matrix's life.</summary>
    internal static PackedMatrix InPlace(int rows, int cols, WeightFormat format, void* data, float* scales = null)
    {
        if (data is null || (format == WeightFormat.Q8) != (scales is not null))
            throw new ArgumentException($"rows in place need their data, and block scales exactly when they are Q8 (got {format})");
        return new PackedMatrix(rows, cols, format, borrowed: data, borrowedScales: scales);
    }

    /// <summary>The rows of <paramref name="parts"/> one after the other; the stack owns the parts from here on.</summary>
    internal static PackedMatrix Stack(PackedMatrix[] parts)
    {
        if (parts.Length == 0 || parts.Any(p => p.Cols != parts[0].Cols || p.Format != parts[0].Format || p._parts is not null))
            throw new ArgumentException("stacked parts need the same columns and format, and cannot be stacks themselves");
        return new PackedMatrix(parts.Sum(p => p.Rows), parts[0].Cols, parts[0].Format, parts: parts);
    }

    /// <summary>Packs rows <c>[first, first + n)</c> from <paramref name="rows"/> (row-major, <c>n × Cols</c>); each row
    /// is packed exactly as <see cref="Pack"/> packs it.</summary>
    internal void PackRows(int first, ReadOnlySpan<float> rows)
    {
        int n = rows.Length / Cols;
        if (rows.Length != n * Cols || first < 0 || first + n > Rows)
            throw new ArgumentException($"rows [{first}, {first + n}) of [{Rows}, {Cols}] from {rows.Length} values");
        for (int r = 0; r < n; r++)
            PackRow(first + r, rows.Slice(r * Cols, Cols));
    }

    /// <summary>Copies rows <c>[first, first + n)</c> already in bfloat16 (row-major, <c>n × Cols</c> bit patterns) into a
    /// bfloat16 matrix: what <see cref="PackRows"/> stores for those values widened to float32, without the round trip.</summary>
    internal void PackRowsBFloat16(int first, ReadOnlySpan<ushort> rows)
    {
        int n = rows.Length / Cols;
        if (Format != WeightFormat.BFloat16 || _borrowed || _parts is not null || rows.Length != n * Cols || first < 0 || first + n > Rows)
            throw new ArgumentException($"bfloat16 rows [{first}, {first + n}) of a {Format} [{Rows}, {Cols}] from {rows.Length} values");
        rows.CopyTo(new Span<ushort>(Bf16 + (long)first * Cols, rows.Length));
    }

    /// <summary>Copies rows <c>[first, first + n)</c> already in Q8 (their quants, row-major <c>n × Cols</c>, and block
    /// scales, <c>n × BlocksPerRow</c>) into a Q8 matrix: a q8 checkpoint's rows as stored (<see cref="Q8Checkpoint"/>).</summary>
    internal void PackRowsQ8(int first, ReadOnlySpan<sbyte> quants, ReadOnlySpan<float> scales)
    {
        int n = quants.Length / Cols;
        if (Format != WeightFormat.Q8 || _borrowed || _parts is not null || quants.Length != n * Cols || scales.Length != n * BlocksPerRow ||
            first < 0 || first + n > Rows)
            throw new ArgumentException($"Q8 rows [{first}, {first + n}) of a {Format} [{Rows}, {Cols}] from {quants.Length} quants and {scales.Length} scales");
        quants.CopyTo(new Span<sbyte>(Q8Data + (long)first * Cols, quants.Length));
        scales.CopyTo(new Span<float>(_scales + (long)first * BlocksPerRow, scales.Length));
    }

    private void PackRow(int r, ReadOnlySpan<float> row)
    {
        if (_borrowed || _parts is not null)
            throw new InvalidOperationException("only a matrix this process allocated is packed into");
        long offset = (long)r * Cols;
        switch (Format)
        {
            case WeightFormat.Float32:
                row.CopyTo(new Span<float>(F32 + offset, Cols));
                break;
            case WeightFormat.BFloat16:
                for (int c = 0; c < Cols; c++)
                    Bf16[offset + c] = ToBFloat16(row[c]);
                break;
            default:
                int blk = 0;
                // Full blocks with vectors where the CPU has them: the same rule bit for bit (Q8Activations.QuantizeBlock256),
                // which is what keeps quantizing an 8B checkpoint at load from taking minutes.
                if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
                    fixed (float* values = row)
                        for (; blk < Cols / Q8BlockSize; blk++)
                            _scales[(long)r * BlocksPerRow + blk] =
                                Kernels.Q8Activations.QuantizeBlock256(values + blk * Q8BlockSize, Q8Data + offset + blk * Q8BlockSize);
                for (; blk < BlocksPerRow; blk++)
                {
                    int start = blk * Q8BlockSize, n = Math.Min(Q8BlockSize, Cols - start);
                    float scale = QuantizeBlock(row.Slice(start, n), new Span<sbyte>(Q8Data + offset + start, n));
                    _scales[(long)r * BlocksPerRow + blk] = scale;
                }

                break;
        }
    }

    /// <summary>Q8_0's rule (ggml <c>quantize_row_q8_0_ref</c>): <c>d = max|x| / 127</c>, <c>q = round(x / d)</c>.</summary>
    internal static float QuantizeBlock(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float amax = 0;
        foreach (float v in x)
            amax = Math.Max(amax, Math.Abs(v));
        float d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        for (int i = 0; i < x.Length; i++)
            q[i] = (sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero);
        return d;
    }

    /// <summary>float32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN, as in c10's <c>round_to_nearest_even</c>.</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    public static float FromBFloat16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Writes row <paramref name="row"/> as float32 (the values every product with this matrix uses).</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
            throw new ArgumentOutOfRangeException(nameof(row));
        if (_parts is not null)
        {
            foreach (var p in _parts)
            {
                if (row < p.Rows)
                {
                    p.DequantizeRow(row, destination);
                    return;
                }

                row -= p.Rows;
            }
        }

        long offset = (long)row * Cols;
        switch (Format)
        {
            case WeightFormat.Float32:
                new ReadOnlySpan<float>(F32 + offset, Cols).CopyTo(destination);
                break;
            case WeightFormat.BFloat16:
                BFloat16Bits.Widen(new ReadOnlySpan<ushort>(Bf16 + offset, Cols), destination); // what prefill does to each row
                break;
            default:
                for (int c = 0; c < Cols; c++)
                    destination[c] = Q8Data[offset + c] * _scales[(long)row * BlocksPerRow + c / Q8BlockSize];
                break;
        }
    }

    /// <summary>Row <paramref name="row"/> of a Q8 matrix as stored: its int8 quants and its block scales.</summary>
    internal void CopyQ8Row(int row, Span<sbyte> quants, Span<float> scales)
    {
        if (Format != WeightFormat.Q8 || (uint)row >= (uint)Rows)
            throw new ArgumentException($"row {row} of a {Format} [{Rows}, {Cols}] matrix has no Q8 blocks");
        new ReadOnlySpan<sbyte>(Q8Data + (long)row * Cols, Cols).CopyTo(quants);
        new ReadOnlySpan<float>(_scales + (long)row * BlocksPerRow, BlocksPerRow).CopyTo(scales);
    }

    /// <summary>A packed (not stacked) Q8 matrix's int8 quants <c>[rows, cols]</c>, as stored.</summary>
    internal ReadOnlySpan<sbyte> Q8Quants() => Format == WeightFormat.Q8 && _parts is null
        ? new ReadOnlySpan<sbyte>(Q8Data, checked((int)((long)Rows * Cols)))
        : throw new InvalidOperationException($"a {Format} matrix{(_parts is null ? "" : " stack")} has no Q8 quants of its own");

    /// <summary>A packed (not stacked) Q8 matrix's block scales <c>[rows, ceil(cols / 32)]</c>, as stored.</summary>
    internal ReadOnlySpan<float> Q8BlockScales() => Format == WeightFormat.Q8 && _parts is null
        ? new ReadOnlySpan<float>(_scales, checked((int)((long)Rows * BlocksPerRow)))
        : throw new InvalidOperationException($"a {Format} matrix{(_parts is null ? "" : " stack")} has no Q8 scales of its own");

    /// <summary>All rows as float32 <c>[rows · cols]</c>: the weights every product with this matrix uses.</summary>
    public float[] Dequantize()
    {
        var all = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++)
            DequantizeRow(r, all.AsSpan(r * Cols, Cols));
        return all;
    }

    /// <summary>Rounds <paramref name="weights"/> in place to what <paramref name="format"/> stores (fake quantization):
    /// a float32 model with these weights computes what the engine computes in that format.</summary>
    public static void RoundTrip(Span<float> weights, int rows, int cols, WeightFormat format)
    {
        if (format == WeightFormat.Float32)
            return;
        using var m = Pack(weights, rows, cols, format);
        for (int r = 0; r < rows; r++)
            m.DequantizeRow(r, weights.Slice(r * cols, cols));
    }

    ~PackedMatrix() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_parts is not null)
        {
            foreach (var p in _parts)
                p.Dispose();
            return;
        }

        if (_borrowed)
        {
            _data = null;
            _scales = null;
            return;
        }

        if (_data != null)
            HugePages.Free(_data);
        if (_scales != null)
            NativeMemory.AlignedFree(_scales);
        _data = null;
        _scales = null;
    }
}
