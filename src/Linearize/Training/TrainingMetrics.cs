namespace Linearize.Training;

/// <summary>One line of <c>metrics.jsonl</c>: an optimizer step, and the evaluation when one ran at that step.
/// <c>TokensPerSecond</c> counts labelled tokens over training-step time only; <c>ElapsedSeconds</c> is wall time.</summary>
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
