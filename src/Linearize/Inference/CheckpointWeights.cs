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

    public long[] Shape(string name) => checkpoint.GetInfo(IsQ8(name) ? Q8Checkpoint.QuantsName(name) : name).Shape;

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
        var quants = (sbyte*)checkpoint.MapInPlace(Q8Checkpoint.QuantsName(name));
        var scales = (float*)checkpoint.MapInPlace(Q8Checkpoint.ScalesName(name));
        long cols = Shape(name)[1], blocks = (cols + PackedMatrix.Q8BlockSize - 1) / PackedMatrix.Q8BlockSize;
        for (int i = 0; i < destination.Length; i++)
        {
            long at = offset + i, row = at / cols, col = at % cols;
            destination[i] = quants[at] * scales[row * blocks + col / PackedMatrix.Q8BlockSize];
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
            return format == WeightFormat.Q8 ? checkpoint.MapInPlace(Q8Checkpoint.QuantsName(name)) : null;
        var info = checkpoint.GetInfo(name);
        bool same = (format, info.DType) is (WeightFormat.BFloat16, SafetensorsDType.BF16) or (WeightFormat.Float32, SafetensorsDType.F32);
        return same && info.Shape.Length == 2 && info.ByteCount > 0 ? checkpoint.MapInPlace(name) : null;
    }

    public float* MapQ8ScalesInPlace(string name) => IsQ8(name) ? (float*)checkpoint.MapInPlace(Q8Checkpoint.ScalesName(name)) : null;

    /// <summary>True when matrix <paramref name="name"/> is stored as Q8 quants and scales (checked against their
    /// shapes and types, so a damaged file is an error naming it rather than garbage weights).</summary>
    private bool IsQ8(string name)
    {
        string quants = Q8Checkpoint.QuantsName(name), scales = Q8Checkpoint.ScalesName(name);
        if (checkpoint.Contains(name) || !checkpoint.Contains(quants))
            return false;
        var q = checkpoint.GetInfo(quants);
        if (!checkpoint.Contains(scales))
            throw new LinearizeException($"{checkpoint.Source}: {quants} has no {scales}");
        var s = checkpoint.GetInfo(scales);
        if (q.DType != SafetensorsDType.I8 || q.Shape.Length != 2 || s.DType != SafetensorsDType.F32 ||
            !s.Shape.SequenceEqual(new[] { q.Shape[0], (q.Shape[1] + PackedMatrix.Q8BlockSize - 1) / PackedMatrix.Q8BlockSize }))
            throw new LinearizeException($"{checkpoint.Source}: {quants} ({q.DType} [{string.Join(", ", q.Shape)}]) and {scales} " +
                                         $"({s.DType} [{string.Join(", ", s.Shape)}]) are not Q8 quants [rows, cols] and F32 scales [rows, ceil(cols / 32)]");
        return true;
    }
}
