using Linearize.Training.Lora;

namespace Linearize.Training;

/// <summary>Everything that determines a training run. Defaults are Liger's recipe (docs/METHODS.md §1.5).</summary>
public sealed record TrainingOptions
{
    public LoraOptions Lora { get; init; } = new();

    /// <summary>Parameters trained in full, by name fragment (<c>embed_tokens</c>, <c>lm_head</c>, <c>layers.0.</c>);
    /// <c>*</c> is every parameter (no LoRA: training from scratch or full fine-tuning). Empty: LoRA only.</summary>
    public IReadOnlyList<string> FullModules { get; init; } = Array.Empty<string>();

    public bool FullOnly => FullModules.Contains("*");

    /// <summary>AdamW learning rate (Liger: 1e-3).</summary>
    public double LearningRate { get; init; } = 1e-3;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;

    /// <summary>torch.optim.AdamW's default, which Liger keeps.</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary><c>constant</c> (Liger's effective schedule), <c>cosine</c> or <c>plateau</c>.</summary>
    public string Schedule { get; init; } = "constant";
    public long WarmupSteps { get; init; }

    /// <summary>Packed sequence length (Liger: 1024).</summary>
    public int SequenceLength { get; init; } = 1024;
    public int BatchSize { get; init; } = 1;

    /// <summary>Micro-batches per optimizer step (Liger: 8).</summary>
    public int GradientAccumulation { get; init; } = 8;
    public int Epochs { get; init; } = 2;

    /// <summary>Stop after this many optimizer steps (overrides epochs when set).</summary>
    public long? MaxSteps { get; init; }
    public int Seed { get; init; }

    /// <summary>Evaluate (and save the last checkpoint) every N optimizer steps; always at the end.</summary>
    public int EvalEvery { get; init; } = 200;

    /// <summary>Clip the global gradient norm of the trainable parameters to this (0 = off). Liger passes 1.0 but never
    /// clips; here it is applied.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    public void Validate()
    {
        Lora.Validate();
        if (LearningRate <= 0)
            throw new LinearizeException($"--lr must be positive, got {LearningRate}");
        if (BatchSize < 1 || GradientAccumulation < 1)
            throw new LinearizeException("--batch-size and --grad-accum must be at least 1");
        if (Epochs < 1 && MaxSteps is null)
            throw new LinearizeException("--epochs must be at least 1");
        if (MaxSteps is < 1)
            throw new LinearizeException($"--max-steps must be at least 1, got {MaxSteps}");
        if (EvalEvery < 1)
            throw new LinearizeException($"--eval-every must be at least 1, got {EvalEvery}");
        if (MaxGradNorm < 0)
            throw new LinearizeException($"--max-grad-norm must be ≥ 0, got {MaxGradNorm}");
        if (WeightDecay < 0)
            throw new LinearizeException($"--weight-decay must be ≥ 0, got {WeightDecay}");
    }
}
