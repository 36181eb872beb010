namespace Linearize.Checkpoints;

/// <summary>One entry of a safetensors header: dtype, shape and the byte range inside the data section.</summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ByteCount => End - Begin;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}
