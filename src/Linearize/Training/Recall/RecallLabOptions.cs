using Linearize.Training.Lora;

namespace Linearize.Training.Recall;

/// <summary>
/// The recall lab (issue 14): a teacher with 64-dimensional heads trained from scratch on MQAR, converted with every
/// method, each evaluated untrained and after the same recovery budget. Every number the lab hard-codes is here.
/// </summary>
public sealed record RecallLabOptions
{
    public RecallTaskOptions Task { get; init; } = new() { MinGap = 32 };

    /// <summary>Training sequences (fresh each epoch is not needed: the pairs differ in every sequence).</summary>
    public int TrainSequences { get; init; } = 6000;

    /// <summary>Held-out sequences (another seed) for every evaluation.</summary>
    public int TestSequences { get; init; } = 256;

    public int Seed { get; init; }

    // The teacher: a Llama with head_dim 64.
    public int Hidden { get; init; } = 256;
    public int Heads { get; init; } = 4;
    public int Layers { get; init; } = 2;
    public int Intermediate { get; init; } = 512;

    /// <summary>Teacher training from scratch: every parameter, AdamW, cosine with warm-up.</summary>
    public TrainingOptions Teacher { get; init; } = new()
    {
        FullModules = new[] { "*" },
        LearningRate = 3e-3,
        WeightDecay = 0.1,
        Schedule = "cosine",
        WarmupSteps = 50,
        SequenceLength = 512,
        BatchSize = 16,
        GradientAccumulation = 1,
        MaxSteps = 600,
        EvalEvery = 100,
        MaxGradNorm = 1.0,
    };

    /// <summary>Methods converted from the teacher (every Liger family, the sliding window, LoLCATs).</summary>
    public IReadOnlyList<string> Methods { get; init; } = new[]
    {
        "swa", "liger-gla", "liger-hgrn2", "liger-gsa", "liger-mamba2", "liger-mlstm", "liger-retention", "lolcats-sw",
    };

    /// <summary>The sliding window of every converted model (Liger's 64).</summary>
    public int Window { get; init; } = 64;

    /// <summary>The same recovery budget for every method: LoRA on q, k, v, o.</summary>
    public TrainingOptions Recovery { get; init; } = new()
    {
        Lora = new LoraOptions { Rank = 8, Alpha = 16, Targets = new[] { "q_proj", "k_proj", "v_proj", "o_proj" } },
        LearningRate = 1e-3,
        WeightDecay = 0,
        Schedule = "constant",
        SequenceLength = 512,
        BatchSize = 8,
        GradientAccumulation = 1,
        MaxSteps = 100,
        EvalEvery = 50,
    };

    /// <summary>LoLCATs' stage 1 before the same LoRA budget: attention transfer of the feature maps.</summary>
    public TrainingOptions Distill { get; init; } = Distillation.AttentionTransferRun.Recipe with
    {
        SequenceLength = 512,
        BatchSize = 8,
        GradientAccumulation = 1,
        MaxSteps = 100,
        EvalEvery = 50,
    };

    public void Validate()
    {
        Task.Validate();
        if (Hidden % Heads != 0)
            throw new LinearizeException($"lab: hidden {Hidden} is not a multiple of {Heads} heads");
        if (TrainSequences < 10 || TestSequences < 1)
            throw new LinearizeException("lab: at least 10 training and 1 held-out sequences");
        foreach (var m in Methods)
            if (!Linearize.LinearAttention.Conversion.LinearizationConfig.Methods.Contains(m))
                throw new LinearizeException($"lab: unknown method '{m}' (known: {string.Join(", ", Linearize.LinearAttention.Conversion.LinearizationConfig.Methods)})");
    }
}
