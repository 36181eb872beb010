using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// One tensor to write, known by its name, type and shape before its data exists: the writer lays out every header
/// first and asks for each tensor's data only when its turn comes, so a checkpoint far larger than memory streams
/// out one tensor at a time.
/// </summary>
/// <param name="Name">The tensor's key.</param>
/// <param name="DType">Its element type as written.</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Produce">Makes the data (of <paramref name="DType"/> and <paramref name="Shape"/>) when it is written.</param>
/// <param name="Owned">Dispose what <paramref name="Produce"/> returned once it is written (a tensor made for the write),
/// rather than leave it to its owner (a model's parameter).</param>
public sealed record SafetensorsEntry(string Name, ScalarType DType, long[] Shape, Func<Tensor> Produce, bool Owned)
{
    /// <summary>An existing tensor, written as it is and left to its owner.</summary>
    public static SafetensorsEntry Of(string name, Tensor tensor) => new(name, tensor.dtype, tensor.shape, () => tensor, false);

    public long Bytes => Shape.Aggregate(1L, (a, b) => a * b) * SafetensorsDTypes.FromScalarType(DType).ElementSize();
}
