namespace Linearize.Inference;

/// <summary>
/// Where a Q8 row's bytes lie (<see cref="PackedMatrix"/>, <see cref="Q8Checkpoint"/>): its blocks of 32 weights in
/// groups of <see cref="GroupBlocks"/>, each group its float32 scales (one 64-byte cache line for a whole group) followed
/// by its blocks' int8 quants (512 bytes), the groups one after the other. The last group may hold fewer blocks, and its
/// last block fewer than 32 weights; nothing is padded, so a row takes <c>4 · ceil(cols / 32) + cols</c> bytes.
/// </summary>
/// <remarks>
/// Why groups: a product reads a row from start to end, and with the scales beside their quants every byte it needs
/// lies ahead of it in one sequential stream that runs on into the next row. Scales in a buffer of their own make a
/// second stream beside every row, and the scales of a whole row ahead of its quants make the reads jump back; either
/// kept decoding about 3 % further from the bandwidth floor (docs/RESULTS.md, "Q8 rows"). A group is the most scales one
/// cache line holds, so its quants start on a line boundary when the row does.
/// </remarks>
internal readonly struct Q8RowLayout
{
    /// <summary>Blocks per group: the float32 scales in one 64-byte cache line.</summary>
    public const int GroupBlocks = 16;

    /// <summary>Bytes of a whole group: its scales, then its quants.</summary>
    public const int GroupBytes = GroupBlocks * (sizeof(float) + PackedMatrix.Q8BlockSize);

    public Q8RowLayout(int cols)
    {
        if (cols < 1)
            throw new ArgumentException($"a Q8 row needs at least one column, got {cols}");
        Cols = cols;
        Blocks = (cols + PackedMatrix.Q8BlockSize - 1) / PackedMatrix.Q8BlockSize;
    }

    public int Cols { get; }

    /// <summary>Blocks in the row (the last may be partial).</summary>
    public int Blocks { get; }

    /// <summary>Bytes of the row: the distance from one row to the next.</summary>
    public long RowBytes => (long)Blocks * sizeof(float) + Cols;

    /// <summary>Offset of block <paramref name="block"/>'s float32 scale from the row's start.</summary>
    public long ScaleOffset(int block) => (long)(block / GroupBlocks) * GroupBytes + block % GroupBlocks * sizeof(float);

    /// <summary>Offset of block <paramref name="block"/>'s first quant from the row's start.</summary>
    public long QuantOffset(int block)
    {
        int group = block / GroupBlocks;
        return (long)group * GroupBytes + GroupScaleBytes(group) + (long)(block % GroupBlocks) * PackedMatrix.Q8BlockSize;
    }

    /// <summary>Bytes of group <paramref name="group"/>'s scales: 64, or fewer for a last group of fewer blocks.</summary>
    public int GroupScaleBytes(int group) => Math.Min(GroupBlocks, Blocks - group * GroupBlocks) * sizeof(float);

    /// <summary>Columns <c>[from, from + destination.Length)</c> of the row at <paramref name="row"/> as float32: each quant
    /// times its block's scale, the weights every product with the row uses. A block at a time, so a whole model
    /// dequantizes without an address computed per weight.</summary>
    public unsafe void Dequantize(byte* row, int from, Span<float> destination)
    {
        if (from < 0 || from + destination.Length > Cols)
            throw new ArgumentOutOfRangeException(nameof(from), $"columns [{from}, {from + destination.Length}) of a row of {Cols}");
        for (int done = 0; done < destination.Length;)
        {
            int col = from + done, k = col / PackedMatrix.Q8BlockSize, at = col % PackedMatrix.Q8BlockSize;
            int n = Math.Min(Math.Min(PackedMatrix.Q8BlockSize, Cols - k * PackedMatrix.Q8BlockSize) - at, destination.Length - done);
            sbyte* q = (sbyte*)(row + QuantOffset(k)) + at;
            float d = *(float*)(row + ScaleOffset(k));
            for (int i = 0; i < n; i++)
                destination[done + i] = q[i] * d;
            done += n;
        }
    }

    /// <summary>The width <c>cols</c> whose row takes <paramref name="rowBytes"/> bytes (<see cref="RowBytes"/> grows with
    /// <c>cols</c>, so at most one does); null when none does.</summary>
    public static int? ColsFromRowBytes(long rowBytes)
    {
        // 4 · ceil(c / 32) + c lies within 4 of 36c / 32, so the blocks are rowBytes / 36 or one more.
        for (long blocks = rowBytes / 36; blocks <= rowBytes / 36 + 1; blocks++)
        {
            long cols = rowBytes - blocks * sizeof(float);
            if (cols >= 1 && cols <= int.MaxValue && new Q8RowLayout((int)cols).RowBytes == rowBytes)
                return (int)cols;
        }

        return null;
    }
}
