namespace Linearize.Evaluation.Passkey;

/// <summary>Exact-match accuracy of one length × depth cell (a length or a depth alone when the other is null: a
/// margin of the table).</summary>
public sealed record PasskeyCell(int? Length, double? Depth, int Samples, int Correct)
{
    public double Accuracy => Samples == 0 ? 0 : Correct / (double)Samples;
}
