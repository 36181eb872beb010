using Linearize.Checkpoints;

namespace Linearize.Inference;

/// <summary>The weights of a safetensors checkpoint, each read from the memory-mapped file when it is packed and
/// released right after: loading this way holds the packed engine and one tensor, never a model. A q8 checkpoint's
/// matrices (<see cref="Q8Checkpoint"/>) are known by their model names: mapped in place as Q8, or dequantized when read.</summary>
internal sealed unsafe class CheckpointWeights(SafetensorsCheckpoint checkpoint) : IWeightSource
{
    public string Source => checkpoint.Source;

    public IEnumerable<string> Names => checkpoint.Names
        .Where(n => !n.EndsWith(".q8_scales", StringComparison.Ordinal))
        .Select(n => n.EndsWith(".q8", StringComparison.Ordinal) ? n[..^3] : n);

    public bool Contains(string name) => checkpoint.Contains(name) || IsQ8(name);

    public long[] Shape(string name)
    {
        if (!IsQ8(name))
            return checkpoint.GetInfo(name).Shape;
        var stored = checkpoint.GetInfo(Q8Checkpoint.RowsName(name)).Shape;
        return new[] { stored[0], (long)Q8RowLayout.ColsFromRowBytes(stored[1])! };
    }

    public float[] ReadFloats(string name)
    {
        var result = new float[Shape(name).Aggregate(1L, (a, b) => a * b)];
        ReadInto(name, 0, result);
        return result;
    }

    public void ReadInto(string name, long offset, Span<float> destination)
    {
        if (!IsQ8(name))
        {
            checkpoint.ReadInto(name, offset, destination);
            return;
        }

        // q × its block's scale: the weights the engine multiplies (PackedMatrix.DequantizeRow).
        byte* rows = checkpoint.MapInPlace(Q8Checkpoint.RowsName(name));
        var layout = new Q8RowLayout((int)Shape(name)[1]);
        for (int done = 0; done < destination.Length;)
        {
            long at = offset + done, row = at / layout.Cols;
            int col = (int)(at % layout.Cols), n = Math.Min(layout.Cols - col, destination.Length - done);
            layout.Dequantize(rows + row * layout.RowBytes, col, destination.Slice(done, n));
            done += n;
        }
    }

    public bool HasBFloat16(string name) => !IsQ8(name) && checkpoint.IsBFloat16(name);

    public void ReadBFloat16Into(string name, long offset, Span<ushort> destination)
    {
        if (IsQ8(name) || !checkpoint.TryReadBFloat16Into(name, offset, destination))
            throw new InvalidOperationException($"{checkpoint.Source}: {name} is not stored as BF16");
    }

    public void* MapInPlace(string name, WeightFormat format)
    {
        if (IsQ8(name))
            return format == WeightFormat.Q8 ? checkpoint.MapInPlace(Q8Checkpoint.RowsName(name)) : null;
        var info = checkpoint.GetInfo(name);
        bool same = (format, info.DType) is (WeightFormat.BFloat16, SafetensorsDType.BF16) or (WeightFormat.Float32, SafetensorsDType.F32);
        return same && info.Shape.Length == 2 && info.ByteCount > 0 ? checkpoint.MapInPlace(name) : null;
    }

    /// <summary>True when matrix <paramref name="name"/> is stored as Q8 rows (checked against their type and length, so
    /// a damaged file is an error naming it rather than garbage weights).</summary>
    private bool IsQ8(string name)
    {
        string rows = Q8Checkpoint.RowsName(name);
        if (checkpoint.Contains(name) || !checkpoint.Contains(rows))
            return false;
        if (checkpoint.Contains(Q8Checkpoint.SeparateScalesName(name)))
            throw new LinearizeException($"{checkpoint.Source}: {rows} and {Q8Checkpoint.SeparateScalesName(name)} are the q8 layout of an " +
                                         "earlier version, which this one does not read; run 'linearize quantize' again on the model it came from");
        var info = checkpoint.GetInfo(rows);
        if (info.DType != SafetensorsDType.U8 || info.Shape.Length != 2 || Q8RowLayout.ColsFromRowBytes(info.Shape[1]) is null)
            throw new LinearizeException($"{checkpoint.Source}: {rows} ({info.DType} [{string.Join(", ", info.Shape)}]) is not Q8 rows " +
                                         "(U8 [rows, 4 · ceil(cols / 32) + cols]: each row's float32 block scales beside its int8 quants)");
        return true;
    }
}
