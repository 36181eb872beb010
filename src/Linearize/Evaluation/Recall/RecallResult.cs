namespace Linearize.Evaluation.Recall;

/// <summary>MQAR accuracy overall and by distance (<see cref="RecallEvaluator.Buckets"/>).</summary>
public sealed record RecallResult(int Sequences, int Answers, int Correct, IReadOnlyList<RecallBucket> Buckets)
{
    public double Accuracy => Answers == 0 ? double.NaN : (double)Correct / Answers;
}
