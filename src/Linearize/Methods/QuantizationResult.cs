namespace Linearize.Methods;

/// <summary>What <see cref="EngineQuantizer.Quantize"/> wrote: the matrices it quantized, and the weight bytes before
/// and after (every tensor of the checkpoint counted).</summary>
public sealed record QuantizationResult(int Matrices, long BytesBefore, long BytesAfter);
