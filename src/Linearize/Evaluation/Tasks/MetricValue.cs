namespace Linearize.Evaluation.Tasks;

/// <summary>A metric as lm-eval reports it: value and standard error (null where lm-eval bootstraps, e.g. perplexity).</summary>
public sealed record MetricValue(string Name, double Value, double? Stderr);
