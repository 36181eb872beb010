using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>
/// A weight matrix <c>[rows, cols]</c> (row-major, the layout of <c>nn.Linear.weight</c>) in a <see cref="WeightFormat"/>,
/// so a matrix-vector product streams it from memory exactly once. Three kinds of storage:
/// <list type="bullet">
/// <item><b>packed</b>: one contiguous 64-byte-aligned native buffer this matrix owns;</item>
/// <item><b>in place</b>: rows that already are in the format where a file maps them (a safetensors bfloat16 or float32
/// <c>[out, in]</c> tensor, or a q8 checkpoint's rows, <see cref="Q8Checkpoint"/>), borrowed, never copied: the
/// mapping's owner keeps them alive;</item>
/// <item><b>stacked</b>: parts with the same columns and format, their rows one after the other (q|k|v, gate|up), each
/// part packed or in place. Kernels run part by part (<see cref="Parts"/>), so a product over a stack computes every
/// row exactly as over the fused copy.</item>
/// </list>
/// A Q8 row is stored as one run of bytes, its float32 block scales beside their int8 quants in groups
/// (<see cref="Q8RowLayout"/>), so a product reads it as one sequential stream.
/// </summary>
public sealed unsafe class PackedMatrix : IDisposable
{
    /// <summary>Weights per Q8 block (llama.cpp's <c>QK8_0</c>).</summary>
    public const int Q8BlockSize = 32;

    private void* _data;
    private readonly long _q8RowBytes;
    private readonly bool _borrowed;
    private readonly PackedMatrix[]? _parts;

    private PackedMatrix(int rows, int cols, WeightFormat format, void* borrowed = null, PackedMatrix[]? parts = null)
    {
        if (rows < 1 || cols < 1)
            throw new ArgumentException($"a packed matrix needs positive dimensions, got [{rows}, {cols}]");
        Rows = rows;
        Cols = cols;
        Format = format;
        _q8RowBytes = format == WeightFormat.Q8 ? new Q8RowLayout(cols).RowBytes : 0;
        _parts = parts;
        if (parts is not null)
            return;
        if (borrowed is not null)
        {
            _data = borrowed;
            _borrowed = true;
            return;
        }

        _data = HugePages.Allocate(DataBytes);
    }

    public int Rows { get; }

    public int Cols { get; }

    public WeightFormat Format { get; }

    /// <summary>Q8 blocks per row (the last may be partial).</summary>
    public int BlocksPerRow => (Cols + Q8BlockSize - 1) / Q8BlockSize;

    /// <summary>Where a stored Q8 row's scales and quants lie.</summary>
    internal Q8RowLayout Q8Layout => new(Cols);

    /// <summary>Bytes of one stored Q8 row: the distance from one row to the next.</summary>
    public long Q8RowBytes => _q8RowBytes;

    private long DataBytes => Format switch
    {
        WeightFormat.Float32 => (long)Rows * Cols * 4,
        WeightFormat.BFloat16 => (long)Rows * Cols * 2,
        _ => Rows * Q8RowBytes,
    };

    /// <summary>Bytes a full product reads: the weights plus, for Q8, the scales.</summary>
    public long Bytes => _parts?.Sum(p => p.Bytes) ?? DataBytes;

    /// <summary>Of <see cref="Bytes"/>, those used in place from a mapped file rather than held in this process's own memory.</summary>
    public long InPlaceBytes => _parts?.Sum(p => p.InPlaceBytes) ?? (_borrowed ? Bytes : 0);

    /// <summary>Where this matrix's bytes lie (every part of a stack), in the order a full product reads them:
    /// <see cref="Bytes"/> in all.</summary>
    internal IEnumerable<(nint Start, long Bytes)> Storage() =>
        _parts?.SelectMany(p => p.Storage()) ?? new[] { ((nint)_data, DataBytes) };

    /// <summary>The parts of a stacked matrix, in row order; null for a matrix with one storage.</summary>
    internal PackedMatrix[]? Parts => _parts;

    internal float* F32 => (float*)_data;

    internal ushort* Bf16 => (ushort*)_data;

    /// <summary>The start of Q8 row <paramref name="row"/> (<see cref="Q8Layout"/> says where its scales and quants lie).</summary>
    internal byte* Q8Row(long row) => (byte*)_data + row * Q8RowBytes;

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
    /// for Q8 <paramref name="rows"/> runs of <see cref="Q8RowLayout.RowBytes"/>), used where they
    /// are: the caller keeps the memory alive and unchanged for this matrix's life.</summary>
    internal static PackedMatrix InPlace(int rows, int cols, WeightFormat format, void* data)
    {
        if (data is null)
            throw new ArgumentException($"{format} rows in place need their data");
        return new PackedMatrix(rows, cols, format, borrowed: data);
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

    /// <summary>Copies rows <c>[first, first + n)</c> already in Q8 (<c>n</c> runs of <see cref="Q8RowBytes"/>, as this
    /// matrix stores them) into a Q8 matrix: a q8 checkpoint's rows as stored (<see cref="Q8Checkpoint"/>).</summary>
    internal void PackRowsQ8(int first, ReadOnlySpan<byte> rows)
    {
        long n = rows.Length / Q8RowBytes;
        if (Format != WeightFormat.Q8 || _borrowed || _parts is not null || rows.Length != n * Q8RowBytes || first < 0 || first + n > Rows)
            throw new ArgumentException($"Q8 rows [{first}, {first + n}) of a {Format} [{Rows}, {Cols}] from {rows.Length} bytes");
        rows.CopyTo(new Span<byte>(Q8Row(first), rows.Length));
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
                var layout = Q8Layout;
                byte* run = Q8Row(r);
                // Full blocks with vectors where the CPU has them: the same rule bit for bit (Q8Activations.QuantizeBlock256),
                // which is what keeps quantizing an 8B checkpoint at load from taking minutes.
                if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
                    fixed (float* values = row)
                        for (; blk < Cols / Q8BlockSize; blk++)
                            *(float*)(run + layout.ScaleOffset(blk)) =
                                Kernels.Q8Activations.QuantizeBlock256(values + blk * Q8BlockSize, (sbyte*)(run + layout.QuantOffset(blk)));
                for (; blk < BlocksPerRow; blk++)
                {
                    int start = blk * Q8BlockSize, n = Math.Min(Q8BlockSize, Cols - start);
                    *(float*)(run + layout.ScaleOffset(blk)) = QuantizeBlock(row.Slice(start, n), new Span<sbyte>(run + layout.QuantOffset(blk), n));
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
                Q8Layout.Dequantize(Q8Row(row), 0, destination[..Cols]);
                break;
        }
    }

    /// <summary>Row <paramref name="row"/> of a Q8 matrix as stored: its int8 quants and its block scales.</summary>
    internal void CopyQ8Row(int row, Span<sbyte> quants, Span<float> scales)
    {
        if (Format != WeightFormat.Q8 || (uint)row >= (uint)Rows)
            throw new ArgumentException($"row {row} of a {Format} [{Rows}, {Cols}] matrix has no Q8 blocks");
        var layout = Q8Layout;
        byte* run = Q8Row(row);
        for (int k = 0; k < BlocksPerRow; k++)
        {
            int start = k * Q8BlockSize;
            new ReadOnlySpan<sbyte>(run + layout.QuantOffset(k), Math.Min(Q8BlockSize, Cols - start)).CopyTo(quants[start..]);
            scales[k] = *(float*)(run + layout.ScaleOffset(k));
        }
    }

    /// <summary>A packed (not stacked) Q8 matrix's rows as stored: <c>[rows, <see cref="Q8RowBytes"/>]</c> bytes.</summary>
    internal ReadOnlySpan<byte> Q8Rows() => Format == WeightFormat.Q8 && _parts is null
        ? new ReadOnlySpan<byte>(_data, checked((int)DataBytes))
        : throw new InvalidOperationException($"a {Format} matrix{(_parts is null ? "" : " stack")} has no Q8 rows of its own");

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
            return;
        }

        if (_data != null)
            HugePages.Free(_data);
        _data = null;
    }
}
