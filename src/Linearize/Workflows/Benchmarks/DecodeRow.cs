namespace Linearize.Workflows.Benchmarks;

/// <summary>One context length of a decode benchmark.</summary>
/// <param name="Context">Tokens held before the timed steps.</param>
/// <param name="MsPerToken">Milliseconds per step (one token for each sequence of the batch).</param>
/// <param name="TokensPerSecond">Tokens per second over the whole batch.</param>
/// <param name="StateBytes">Decoding state of one sequence after the context, before the timed steps.</param>
/// <param name="BytesPerStep">Bytes a step reads: the weights once plus every sequence's state.</param>
/// <param name="GbPerSecond">What those bytes per step make per second.</param>
/// <param name="FloorMs">With <see cref="DecodeBenchmarkOptions.ReadFloor"/>: the median time of a plain read of the
/// step's matrices where they lie (<see cref="Inference.DecodeEngine.TimeWeightRead"/>), scaled to
/// <paramref name="BytesPerStep"/> — what a step cannot beat at that moment.</param>
/// <param name="PairedMs">The median step timed alternately with those reads (each step right before one read), so
/// that <c>FloorMs / PairedMs</c> compares the two under the same load.</param>
/// <param name="Profile">With <see cref="DecodeBenchmarkOptions.Profile"/>: milliseconds per timed step in each part of
/// the step (<see cref="Inference.StepProfile"/>).</param>
public sealed record DecodeRow(int Context, double MsPerToken, double TokensPerSecond, long StateBytes, long BytesPerStep, double GbPerSecond,
    double? FloorMs = null, double? PairedMs = null, IReadOnlyList<(Inference.StepRegion Region, double MsPerStep)>? Profile = null);
