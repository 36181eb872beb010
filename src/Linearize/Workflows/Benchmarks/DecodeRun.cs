namespace Linearize.Workflows.Benchmarks;

/// <summary>A decode benchmark of one model: its rows, one per context length.</summary>
/// <param name="Model">The model's short name for tables.</param>
/// <param name="Mixers">Each distinct layer mixer with its count, e.g. <c>liger-gla(window=64, …) × 12</c>.</param>
/// <param name="Path">The model as given.</param>
/// <param name="WeightDType">The weights' format as decoded (<c>float32</c>, <c>bfloat16</c>, <c>q8</c>).</param>
/// <param name="WeightBytesPerStep">Weight bytes a step reads.</param>
/// <param name="PeakRssBytes">Peak resident bytes while this model was loaded and measured (<see cref="PeakMemory"/>).</param>
public sealed record DecodeRun(string Model, string Mixers, string Path, string WeightDType, long WeightBytesPerStep, IReadOnlyList<DecodeRow> Rows,
    long PeakRssBytes);
