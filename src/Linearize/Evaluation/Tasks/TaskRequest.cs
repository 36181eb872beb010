namespace Linearize.Evaluation.Tasks;

/// <summary>One log-likelihood request as lm-evaluation-harness builds it: score <paramref name="Continuation"/> given
/// <paramref name="Context"/> (docs/EVALUATION.md §1). For multiple choice the continuation is the target delimiter + a choice.</summary>
public sealed record TaskRequest(string Context, string Continuation);
