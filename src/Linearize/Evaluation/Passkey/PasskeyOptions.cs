namespace Linearize.Evaluation.Passkey;

/// <summary>What <see cref="PasskeyGenerator"/> makes: every length × depth cell, with the same number of samples in
/// each (docs/EVALUATION.md §4).</summary>
public sealed record PasskeyOptions
{
    /// <summary>Tokens per sample, prompt and answer together (BOS included): the positions a training sequence of
    /// this length would take.</summary>
    public IReadOnlyList<int> Lengths { get; init; } = [256, 512, 1024];

    /// <summary>Where the needle goes, as a fraction of the filler before it: 0 right after BOS, 1 right before the question.</summary>
    public IReadOnlyList<double> Depths { get; init; } = [0, 0.25, 0.5, 0.75, 1];

    public int SamplesPerCell { get; init; } = 5;

    /// <summary>Digits of the pass key (no leading zero); 5 in the passkey papers.</summary>
    public int Digits { get; init; } = 5;

    public int Seed { get; init; }

    /// <summary>Throws a one-line error naming the CLI flag.</summary>
    public void Validate()
    {
        if (Lengths.Count == 0)
            throw new LinearizeException("--lengths: give at least one length");
        foreach (int l in Lengths)
            if (l < 1)
                throw new LinearizeException($"--lengths: {l} is not a positive number of tokens");
        if (Lengths.Distinct().Count() != Lengths.Count)
            throw new LinearizeException($"--lengths: {string.Join(",", Lengths)} repeats a length");
        if (Depths.Count == 0)
            throw new LinearizeException("--depths: give at least one depth");
        foreach (double d in Depths)
            if (!(d >= 0 && d <= 1))
                throw new LinearizeException($"--depths: {d} is not in [0, 1]");
        if (Depths.Distinct().Count() != Depths.Count)
            throw new LinearizeException($"--depths: {string.Join(",", Depths)} repeats a depth");
        if (SamplesPerCell < 1)
            throw new LinearizeException($"--samples-per-cell must be at least 1, got {SamplesPerCell}");
        if (Digits is < 1 or > 9)
            throw new LinearizeException($"--digits must be between 1 and 9, got {Digits}");
    }
}
