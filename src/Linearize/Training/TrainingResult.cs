namespace Linearize.Training;

/// <summary>How a training run ended.</summary>
/// <param name="Completed">False when interrupted (Ctrl-C); a checkpoint was saved and <c>--resume</c> continues.</param>
/// <param name="Seconds">Time spent in training steps (forward, backward, update), excluding evaluation and checkpoints.</param>
public sealed record TrainingResult(bool Completed, long Steps, long Tokens, double Seconds, double? BestEvalLoss,
    double? FinalEvalLoss, string? BestCheckpoint, string LastCheckpoint)
{
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;
}
