namespace Linearize.Training.Lora;

/// <summary>
/// LoRA hyper-parameters (Hu et al. 2021; PEFT <c>LoraConfig</c>). Liger's recipe: r 8, alpha 8 (PEFT's default
/// alpha equals r when left unset: scale 1), dropout 0, on q/k/v (docs/METHODS.md §1.5); LoLCATs stage 2: r 8, alpha 16,
/// on q/k/v/o (§2.6).
/// </summary>
public sealed record LoraOptions
{
    public static readonly string[] KnownTargets = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };

    public int Rank { get; init; } = 8;

    public double Alpha { get; init; } = 8;

    public double Dropout { get; init; }

    /// <summary>Module names that get an adapter (PEFT <c>target_modules</c>).</summary>
    public IReadOnlyList<string> Targets { get; init; } = new[] { "q_proj", "k_proj", "v_proj" };

    /// <summary><c>alpha / rank</c>, the factor on <c>B A x</c>.</summary>
    public double Scale => Alpha / Rank;

    /// <summary>Accepts <c>q,k,v</c> as well as <c>q_proj,k_proj,v_proj</c>.</summary>
    public static IReadOnlyList<string> ParseTargets(string text)
    {
        var result = new List<string>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string name = raw.Length == 1 || raw is "gate" or "up" or "down" ? raw + "_proj" : raw;
            if (!KnownTargets.Contains(name))
                throw new LinearizeException($"--targets: unknown module '{raw}' (known: q, k, v, o, gate, up, down)");
            if (!result.Contains(name))
                result.Add(name);
        }

        if (result.Count == 0)
            throw new LinearizeException("--targets: no module named");
        return result;
    }

    public void Validate()
    {
        if (Rank < 1)
            throw new LinearizeException($"--rank must be at least 1, got {Rank}");
        if (Alpha <= 0)
            throw new LinearizeException($"--alpha must be positive, got {Alpha}");
        if (Dropout is < 0 or >= 1)
            throw new LinearizeException($"--lora-dropout must be in [0, 1), got {Dropout}");
    }
}
