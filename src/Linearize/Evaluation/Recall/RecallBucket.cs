namespace Linearize.Evaluation.Recall;

/// <summary>Accuracy over the answers whose key-to-query distance lies in [<see cref="From"/>, <see cref="To"/>].</summary>
public sealed record RecallBucket(string Name, int From, int To, int Count, int Correct)
{
    public double Accuracy => Count == 0 ? double.NaN : (double)Correct / Count;
}
