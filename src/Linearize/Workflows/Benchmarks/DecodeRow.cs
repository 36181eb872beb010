namespace Linearize.Workflows.Benchmarks;

/// <summary>One context length of a decode benchmark.</summary>
/// <param name="Context">Tokens held before the timed steps.</param>
/// <param name="MsPerToken">Milliseconds per step (one token for each sequence of the batch).</param>
/// <param name="TokensPerSecond">Tokens per second over the whole batch.</param>
/// <param name="StateBytes">Decoding state of one sequence after the context, before the timed steps.</param>
/// <param name="BytesPerStep">Bytes a step reads: the weights once plus every sequence's state.</param>
/// <param name="GbPerSecond">What those bytes per step make per second.</param>
public sealed record DecodeRow(int Context, double MsPerToken, double TokensPerSecond, long StateBytes, long BytesPerStep, double GbPerSecond);
