namespace Linearize.Generation;

/// <summary>How the next token is chosen.</summary>
/// <param name="Temperature">0 = greedy (argmax); otherwise logits are divided by it before sampling.</param>
/// <param name="TopK">Keep only the K most likely tokens (0 = no limit).</param>
/// <param name="TopP">Nucleus sampling: keep the smallest set of tokens whose probability reaches P (1 = no limit).</param>
/// <param name="Seed">Seed of the sampler's own random generator; the same seed gives the same text.</param>
public sealed record SamplingOptions(double Temperature = 0.0, int TopK = 0, double TopP = 1.0, ulong Seed = 0)
{
    public static readonly SamplingOptions Greedy = new();

    public bool IsGreedy => Temperature <= 0;

    public void Validate()
    {
        if (Temperature < 0 || double.IsNaN(Temperature))
            throw new LinearizeException($"--temperature must be ≥ 0, got {Temperature}");
        if (TopK < 0)
            throw new LinearizeException($"--top-k must be ≥ 0, got {TopK}");
        if (!(TopP > 0 && TopP <= 1))
            throw new LinearizeException($"--top-p must be in (0, 1], got {TopP}");
    }
}
