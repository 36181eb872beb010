using Linearize.Checkpoints;

namespace Linearize.Inference;

/// <summary>The weights of a safetensors checkpoint, each read from the memory-mapped file when it is packed and
/// released right after: loading this way holds the packed engine and one tensor, never a model.</summary>
internal sealed unsafe class CheckpointWeights(SafetensorsCheckpoint checkpoint) : IWeightSource
{
    public string Source => checkpoint.Source;

    public IEnumerable<string> Names => checkpoint.Names;

    public bool Contains(string name) => checkpoint.Contains(name);

    public long[] Shape(string name) => checkpoint.GetInfo(name).Shape;

    public float[] ReadFloats(string name)
    {
        var result = new float[checkpoint.GetInfo(name).ElementCount];
        checkpoint.ReadInto(name, 0, result);
        return result;
    }

    public void ReadInto(string name, long offset, Span<float> destination) => checkpoint.ReadInto(name, offset, destination);

    public bool HasBFloat16(string name) => checkpoint.IsBFloat16(name);

    public void ReadBFloat16Into(string name, long offset, Span<ushort> destination)
    {
        if (!checkpoint.TryReadBFloat16Into(name, offset, destination))
            throw new InvalidOperationException($"{checkpoint.Source}: {name} is not stored as BF16");
    }

    public void* MapInPlace(string name, WeightFormat format)
    {
        var info = checkpoint.GetInfo(name);
        bool same = (format, info.DType) is (WeightFormat.BFloat16, SafetensorsDType.BF16) or (WeightFormat.Float32, SafetensorsDType.F32);
        return same && info.Shape.Length == 2 && info.ByteCount > 0 ? checkpoint.MapInPlace(name) : null;
    }
}
