namespace Linearize.Training;

/// <summary>One line of <c>metrics.jsonl</c>: an optimizer step, and the evaluation when one ran at that step.</summary>
public sealed record TrainingMetrics(
    long Step,
    long TotalSteps,
    int Epoch,
    double Loss,
    double LearningRate,
    double GradNorm,
    long Tokens,
    double TokensPerSecond,
    double ElapsedSeconds,
    double? EvalLoss);
