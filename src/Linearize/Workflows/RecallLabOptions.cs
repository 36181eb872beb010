using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.Training.Lora;
using Linearize.Training;

namespace Linearize.Workflows;

/// <summary>
/// The recall lab: a teacher with 64-dimensional heads trained from scratch on MQAR, converted with every
/// method, each evaluated untrained and after the same recovery budget. Every number the lab hard-codes is here.
/// </summary>
public sealed record RecallLabOptions
{
    public RecallTaskOptions Task { get; init; } = new() { Pairs = 8, Queries = 16, MinGap = 32 };

    /// <summary>The teacher's first stage: the same keys and values in short sequences with few pairs, where the
    /// induction mechanism MQAR needs forms within a few hundred steps (measured: at 512 tokens from scratch the loss
    /// sat at chance for 300 steps; at 64 tokens, 4 pairs, 66 % recall after 300 steps, and 20 % already at 512 tokens).</summary>
    public RecallTaskOptions WarmupTask { get; init; } = new() { Pairs = 4, Queries = 8, SequenceLength = 64 };

    public int WarmupSequences { get; init; } = 20000;

    public TrainingOptions TeacherWarmup { get; init; } = new()
    {
        FullModules = new[] { "*" },
        LearningRate = 1e-3,
        WeightDecay = 0.1,
        Schedule = "cosine",
        WarmupSteps = 20,
        SequenceLength = 64,
        BatchSize = 64,
        GradientAccumulation = 1,
        MaxSteps = 400,
        EvalEvery = 100,
    };

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
        LearningRate = 1e-3,
        WeightDecay = 0.1,
        Schedule = "cosine",
        WarmupSteps = 10,
        SequenceLength = 512,
        BatchSize = 16,
        GradientAccumulation = 1,
        MaxSteps = 800,
        EvalEvery = 100,
        MaxGradNorm = 1.0,
    };

    /// <summary>Rows converted from the teacher: the sliding window, every Liger family (the delta-rule ones also with
    /// β in (0, 2); GLA also with the learned gate, with the RMSNorm read-out and with a sparse cache of 16 pairs), LoLCATs
    /// (also with a sparse cache of 16 pairs: LoLA's own setting).</summary>
    public IReadOnlyList<RecallLabMethod> Methods { get; init; } = new[]
    {
        LinearizationMethods.Swa, LinearizationMethods.LigerGla, LinearizationMethods.LigerHgrn2, LinearizationMethods.LigerGsa,
        LinearizationMethods.LigerMamba2, LinearizationMethods.LigerMlstm, LinearizationMethods.LigerRetention, LinearizationMethods.LigerGdn,
        LinearizationMethods.LigerDeltaNet,
    }.Select(m => new RecallLabMethod(m)).Append(new RecallLabMethod(LinearizationMethods.LigerGdn, NegativeEigenvalues: true))
        .Append(new RecallLabMethod(LinearizationMethods.LigerGla, LearnedGate: true)).Append(new RecallLabMethod(LinearizationMethods.LigerGla, RmsNorm: true))
        .Append(new RecallLabMethod(LinearizationMethods.LigerGla, SparseCache: DefaultSparseCache))
        .Append(new RecallLabMethod(LinearizationMethods.LolcatsSw)).Append(new RecallLabMethod(LinearizationMethods.LolcatsSw, SparseCache: DefaultSparseCache))
        .ToArray();

    /// <summary>Slots per KV head of the default sparse-cache rows (<c>+sparse16</c>): a quarter of the lab's 64-key window.</summary>
    public const int DefaultSparseCache = 16;

    /// <summary>libtorch's intra-op threads for the whole lab. Fixed rather than measured (as <c>train</c> measures
    /// free cores) because the thread count decides how parallel reductions split their sums, so the same seed gives
    /// the same numbers only at the same count; one thread also keeps the lab from stalling on a shared machine
    /// (docs/RESULTS.md, "Training beside other work").</summary>
    public int Threads { get; init; } = 1;

    /// <summary>The sliding window of every converted model (Liger's 64).</summary>
    public int Window { get; init; } = 64;

    /// <summary>The same recovery budget for every method: LoRA on q, k, v, o; the rows whose conversion adds parameters
    /// also train those in full — the delta rule's <c>b_proj</c> (zero-initialised, it would otherwise leave β = σ(0) = ½
    /// for every token) and the learned gate's <c>g_proj</c>.</summary>
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
    public TrainingOptions Distill { get; init; } = AttentionTransferRun.Recipe with
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
        WarmupTask.Validate();
        if (WarmupTask.Keys != Task.Keys || WarmupTask.Values != Task.Values)
            throw new LinearizeException("lab: the warm-up task must use the task's keys and values (one vocabulary)");
        if (Hidden % Heads != 0)
            throw new LinearizeException($"lab: hidden {Hidden} is not a multiple of {Heads} heads");
        if (TrainSequences < 10 || TestSequences < 1)
            throw new LinearizeException("lab: at least 10 training and 1 held-out sequences");
        if (Methods.Count == 0)
            throw new LinearizeException("lab: no methods to compare");
        if (Methods.Select(m => m.Name).Distinct().Count() != Methods.Count)
            throw new LinearizeException("lab: a method is listed twice");
        if (Threads < 1)
            throw new LinearizeException($"lab: --threads must be at least 1, got {Threads}");
    }
}
