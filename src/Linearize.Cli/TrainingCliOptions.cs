using System.CommandLine;
using TorchSharp;
using Linearize.Data;
using Linearize.Training;
using Linearize.Training.Lora;

namespace Linearize.Cli;

/// <summary>The data and optimisation options shared by <c>train</c> and <c>pipeline</c>; defaults are Liger's recipe.</summary>
public sealed class TrainingCliOptions
{
    public Option<string> Data { get; } = new("--data") { Description = "Training data: Alpaca .json/.jsonl (instruction, input, output), or plain text", Required = true };
    public Option<string?> ValData { get; } = new("--val-data") { Description = "Validation data (default: hold out records from --data)" };
    public Option<string> TextSplit { get; } = new("--text-split") { Description = "Plain text: 'lines' (each non-empty line a document: BOS + line + EOS), 'paragraphs' (blank-line separated), or 'stream' (the whole text as one document, as the rolling perplexity protocol reads it)", DefaultValueFactory = _ => "lines" };
    public Option<int> SkipDocs { get; } = new("--skip-docs") { Description = "Plain text: skip the first N documents (keep an evaluation set out of training)", DefaultValueFactory = _ => 0 };
    public Option<int> ValRecords { get; } = new("--val-records") { Description = "Records held out for validation without --val-data (at most 10 %)", DefaultValueFactory = _ => 200 };
    public Option<bool> SkipBad { get; } = new("--skip-bad-records") { Description = "Skip malformed Alpaca records (counted and reported) instead of failing" };
    public Option<string> Targets { get; } = new("--targets") { Description = "Projections that get LoRA: q,k,v,o,gate,up,down", DefaultValueFactory = _ => "q,k,v" };
    public Option<int> Rank { get; } = new("--rank") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
    public Option<double> Alpha { get; } = new("--alpha") { Description = "LoRA alpha (scale = alpha / rank)", DefaultValueFactory = _ => 8 };
    public Option<double> Dropout { get; } = new("--lora-dropout") { Description = "Dropout on the LoRA input", DefaultValueFactory = _ => 0 };
    public Option<double> Lr { get; } = new("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => 1e-3 };
    public Option<double> WeightDecay { get; } = new("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 0.01 };
    public Option<string> Schedule { get; } = new("--schedule") { Description = "constant, cosine (with --warmup) or plateau (×0.1 after 10 evaluations without improvement)", DefaultValueFactory = _ => "constant" };
    public Option<long> Warmup { get; } = new("--warmup") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 0 };
    public Option<int> SeqLen { get; } = new("--seq-len") { Description = "Packed sequence length", DefaultValueFactory = _ => 1024 };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Sequences per micro-batch", DefaultValueFactory = _ => 1 };
    public Option<int> GradAccum { get; } = new("--grad-accum") { Description = "Micro-batches per optimizer step", DefaultValueFactory = _ => 8 };
    public Option<int> Epochs { get; } = new("--epochs") { Description = "Passes over the training data", DefaultValueFactory = _ => 2 };
    public Option<long?> MaxSteps { get; } = new("--max-steps") { Description = "Stop after N optimizer steps (instead of --epochs)" };
    public Option<int> EvalEvery { get; } = new("--eval-every") { Description = "Evaluate and checkpoint every N steps (and at the end)", DefaultValueFactory = _ => 50 };
    public Option<double> MaxGradNorm { get; } = new("--max-grad-norm") { Description = "Clip the global gradient norm (0 = off)", DefaultValueFactory = _ => 1.0 };
    public Option<int> Seed { get; } = new("--seed") { Description = "Seed for LoRA init, data order and dropout", DefaultValueFactory = _ => 0 };

    /// <summary>libtorch's intra-op threads; by default one per core that other work leaves idle when the run starts
    /// (<see cref="FreeCores"/>).</summary>
    public Option<int?> Threads { get; } = new("--threads") { Description = "libtorch threads (default: the cores other work leaves idle when the run starts)" };

    private readonly bool _lora;

    public TrainingCliOptions() : this(null)
    {
    }

    /// <param name="defaults">Another recipe's defaults (attention transfer: lr 1e-2, no weight decay, plateau, no
    /// clipping); with it, the LoRA options are left out.</param>
    public TrainingCliOptions(TrainingOptions? defaults)
    {
        TextSplit.AcceptOnlyFromAmong("lines", "paragraphs", "stream");
        Schedule.AcceptOnlyFromAmong(LearningRateScheduleKinds);
        _lora = defaults is null;
        if (defaults is not null)
        {
            Lr.DefaultValueFactory = _ => defaults.LearningRate;
            WeightDecay.DefaultValueFactory = _ => defaults.WeightDecay;
            Schedule.DefaultValueFactory = _ => defaults.Schedule;
            MaxGradNorm.DefaultValueFactory = _ => defaults.MaxGradNorm;
            EvalEvery.DefaultValueFactory = _ => defaults.EvalEvery;
            Epochs.DefaultValueFactory = _ => defaults.Epochs;
            GradAccum.DefaultValueFactory = _ => defaults.GradientAccumulation;
            SeqLen.DefaultValueFactory = _ => defaults.SequenceLength;
        }
    }

    private static readonly string[] LearningRateScheduleKinds = Linearize.Training.Optim.LearningRateSchedule.Kinds;

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Data, ValData, TextSplit, SkipDocs, ValRecords, SkipBad, Targets, Rank, Alpha, Dropout, Lr, WeightDecay,
                     Schedule, Warmup, SeqLen, BatchSize, GradAccum, Epochs, MaxSteps, EvalEvery, MaxGradNorm, Seed, Threads })
            if (_lora || (o != Targets && o != Rank && o != Alpha && o != Dropout))
                command.Add(o);
    }

    /// <summary>Sets libtorch's threads (process-wide): <c>--threads</c>, or else the cores idle over a quarter of a
    /// second, when fewer than libtorch's default; says so on stderr when it leaves cores out.</summary>
    public void ApplyThreads(ParseResult r)
    {
        if (r.GetValue(Threads) is int threads)
        {
            if (threads < 1)
                throw new LinearizeException($"--threads must be at least 1, got {threads}");
            torch.set_num_threads(threads);
            return;
        }

        int free = FreeCores.Measure(TimeSpan.FromMilliseconds(250)), current = torch.get_num_threads();
        if (free >= current)
            return;
        torch.set_num_threads(free);
        Console.Error.WriteLine($"threads: {free} (other work keeps {Plural.Of(Environment.ProcessorCount - free, "core")} busy; --threads N to choose)");
    }

    public TrainingOptions Training(ParseResult r) => new()
    {
        Lora = !_lora ? new LoraOptions() : new LoraOptions
        {
            Rank = r.GetValue(Rank),
            Alpha = r.GetValue(Alpha),
            Dropout = r.GetValue(Dropout),
            Targets = LoraOptions.ParseTargets(r.GetValue(Targets)!),
        },
        LearningRate = r.GetValue(Lr),
        WeightDecay = r.GetValue(WeightDecay),
        Schedule = r.GetValue(Schedule)!,
        WarmupSteps = r.GetValue(Warmup),
        SequenceLength = r.GetValue(SeqLen),
        BatchSize = r.GetValue(BatchSize),
        GradientAccumulation = r.GetValue(GradAccum),
        Epochs = r.GetValue(Epochs),
        MaxSteps = r.GetValue(MaxSteps),
        EvalEvery = r.GetValue(EvalEvery),
        MaxGradNorm = r.GetValue(MaxGradNorm),
        Seed = r.GetValue(Seed),
    };

    public TrainingData.Options DataOptions(ParseResult r) => new()
    {
        TextSplit = r.GetValue(TextSplit) switch
        {
            "paragraphs" => TextDataset.Split.Paragraphs,
            "stream" => TextDataset.Split.Stream,
            _ => TextDataset.Split.Lines,
        },
        SkipDocuments = r.GetValue(SkipDocs),
        SkipBadRecords = r.GetValue(SkipBad),
        ValidationRecords = r.GetValue(ValRecords),
        SequenceLength = r.GetValue(SeqLen),
        Seed = r.GetValue(Seed),
    };
}
