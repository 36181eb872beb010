using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.Evaluation;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;
using Linearize.Training.Lora;
using Linearize.Training;

namespace Linearize.Workflows;

/// <summary>
/// Teacher → converted → LoRA-trained → merged linear model, with perplexity of each stage on the same text under
/// both protocols (per-line and rolling), written to <c>report.md</c> and <c>report.json</c>.
/// Layout of the output directory: <c>converted/</c>, <c>train/</c> (checkpoints, metrics, adapter), <c>merged/</c>
/// (the final model), <c>report.*</c>.
/// </summary>
public sealed class LinearizationPipeline
{
    public sealed record Options
    {
        public required string TeacherPath { get; init; }
        public string? TokenizerPath { get; init; }
        public required LinearizationConfig Linearization { get; init; }
        public required string DataPath { get; init; }
        public string? ValidationDataPath { get; init; }
        public TrainingData.Options Data { get; init; } = new();
        public TrainingOptions Training { get; init; } = new();
        public string? EvalTextPath { get; init; }

        /// <summary>Evaluation documents: per-line protocol scores the first N non-empty lines; rolling uses the text up to the N-th.</summary>
        public int? EvalDocuments { get; init; } = 200;
        public int EvalMaxLength { get; init; } = 512;

        /// <summary>lm-eval tasks to run on every stage (none by default), from <see cref="EvalTasksDataDirectory"/>.</summary>
        public IReadOnlyList<string> EvalTasks { get; init; } = Array.Empty<string>();
        public string? EvalTasksDataDirectory { get; init; }
        public int? EvalTasksLimit { get; init; }
        public int? EvalTasksFewshot { get; init; }
        public required string OutputDirectory { get; init; }
        public bool Resume { get; init; }

        /// <summary>LoLCATs stage 1 (attention transfer) before LoRA; null skips it. Ignored for other methods.</summary>
        public TrainingOptions? Distill { get; init; }
        public double MseFactor { get; init; } = Linearize.Training.Distillation.AttentionTransferObjective.DefaultMseFactor;
        public double XentFactor { get; init; }
    }

    /// <summary>A stage's perplexities, and for a training stage the tokens it trained on and its time in training steps.</summary>
    public sealed record Stage(string Name, PerplexityResult? PerLine, PerplexityResult? Rolling, long? TrainedTokens = null,
        double? TrainSeconds = null, long? Steps = null, IReadOnlyList<Evaluation.Tasks.TaskScore>? Tasks = null);

    public sealed record Result(IReadOnlyList<Stage> Stages, TrainingResult Training, TrainingData.Result Data,
        LoraInjector.Report Lora, double WallSeconds, string MergedDirectory, string ReportPath);

    private readonly Options _o;

    public LinearizationPipeline(Options options) => _o = options;

    public Result Run(CancellationToken cancel, Action<string>? log = null, Action<TrainingMetrics>? onStep = null)
    {
        var watch = Stopwatch.StartNew();
        string outDir = _o.OutputDirectory;
        Directory.CreateDirectory(outDir);
        var source = ModelSource.Resolve(_o.TeacherPath, _o.TokenizerPath);
        var tokenizer = source.LoadTokenizer();
        var stages = new List<Stage>();

        using var teacher = ModelLoader.Load(source);
        if (_o.EvalTextPath is not null)
        {
            log?.Invoke("evaluating the teacher");
            stages.Add(Evaluate("teacher", teacher, tokenizer));
        }

        log?.Invoke($"converting ({_o.Linearization.Method})");
        string convertedDir = Path.Combine(outDir, "converted");
        var student = Converter.ConvertToDirectory(teacher, _o.Linearization, convertedDir, source.TokenizerPath);
        try
        {
            if (_o.EvalTextPath is not null)
            {
                log?.Invoke("evaluating the converted model before training");
                stages.Add(Evaluate("converted", student, tokenizer));
            }

            string loraBase = convertedDir;
            if (_o.Linearization.IsLolcats && _o.Distill is not null)
            {
                var distilled = Distill(convertedDir, source, cancel, log, onStep);
                if (distilled is null)
                    return new Result(stages, new TrainingResult(false, 0, 0, 0, null, null, null, ""), EmptyData, EmptyLora,
                        watch.Elapsed.TotalSeconds, "", "");
                student.Dispose();
                student = ModelLoader.Load(new ModelSource(ModelSourceKind.HuggingFaceDirectory, distilled.Value.Directory, source.TokenizerPath));
                loraBase = distilled.Value.Directory;
                var t = distilled.Value.Training;
                var stage = _o.EvalTextPath is null ? new Stage("distilled", null, null) : Evaluate("distilled", student, tokenizer);
                stages.Add(stage with { TrainedTokens = t.Tokens, TrainSeconds = t.Seconds, Steps = t.Steps });
                if (_o.EvalTextPath is not null)
                    log?.Invoke("evaluated the distilled model");
            }

            return TrainAndMerge(student, loraBase, source, tokenizer, stages, watch, cancel, log, onStep);
        }
        finally
        {
            student.Dispose();
        }
    }

    private static readonly TrainingData.Result EmptyData = new(new(), new(), 0, 0, 0, 0);
    private static readonly LoraInjector.Report EmptyLora = new(0, 0, 0, Array.Empty<string>());

    /// <summary>LoLCATs stage 1 in <c>distill/</c>; null when interrupted. A finished stage (its <c>model/</c> exists) is reused on resume.</summary>
    private (string Directory, TrainingResult Training)? Distill(string convertedDir, ModelSource source, CancellationToken cancel,
        Action<string>? log, Action<TrainingMetrics>? onStep)
    {
        string distillDir = Path.Combine(_o.OutputDirectory, "distill");
        var run = new AttentionTransferRun(new AttentionTransferRun.Options
        {
            ModelPath = convertedDir,
            TokenizerPath = source.TokenizerPath,
            DataPath = _o.DataPath,
            ValidationDataPath = _o.ValidationDataPath,
            Data = _o.Data,
            Training = _o.Distill!,
            MseFactor = _o.MseFactor,
            XentFactor = _o.XentFactor,
            OutputDirectory = distillDir,
            Resume = _o.Resume && File.Exists(Path.Combine(distillDir, "checkpoints", Trainer.LastCheckpointName)),
        });
        log?.Invoke("attention transfer (LoLCATs stage 1): training the feature maps and window factors");
        var result = run.Run(cancel, log, onStep);
        return result.Training.Completed ? (result.ModelDirectory!, result.Training) : null;
    }

    private Result TrainAndMerge(LlamaForCausalLM student, string convertedDir, ModelSource source, TextTokenizer tokenizer, List<Stage> stages,
        Stopwatch watch, CancellationToken cancel, Action<string>? log, Action<TrainingMetrics>? onStep)
    {
        string outDir = _o.OutputDirectory;

        log?.Invoke("preparing data");
        var data = TrainingData.Prepare(_o.DataPath, _o.ValidationDataPath, tokenizer,
            _o.Data with { SequenceLength = _o.Training.SequenceLength, Seed = _o.Training.Seed });
        var skip = _o.Linearization.SoftmaxLayers.ToHashSet();
        var lora = LoraInjector.Inject(student, _o.Training.Lora, (ulong)_o.Training.Seed, skip); // as LoLCATs: softmax layers keep their weights
        log?.Invoke($"training {lora.TrainableParameters:N0} LoRA parameters ({lora.TrainableFraction:P3}) on {Plural.Of(data.Train.Count, "sequence")}");
        string trainDir = Path.Combine(outDir, "train");
        var trainer = new Trainer(student, data.Train, data.Validation, _o.Training, trainDir);
        var training = trainer.Run(_o.Resume, cancel, onStep);
        if (!training.Completed)
            return new Result(stages, training, data, lora, watch.Elapsed.TotalSeconds, "", "");

        // Best checkpoint by validation loss when there is one (the reference code means to, but discards it).
        if (training.BestCheckpoint is not null)
            RestoreTrainable(student, training.BestCheckpoint);
        LoraAdapterFile.Save(student, _o.Training.Lora, Path.Combine(trainDir, "adapter"), convertedDir);
        LoraInjector.Merge(student);
        string mergedDir = Path.Combine(outDir, "merged");
        ModelLoader.SaveHuggingFace(student, student.Config, mergedDir, source.TokenizerPath);
        if (_o.EvalTextPath is not null)
        {
            log?.Invoke("evaluating the trained model");
            stages.Add(Evaluate("trained", student, tokenizer) with
            {
                TrainedTokens = training.Tokens, TrainSeconds = training.Seconds, Steps = training.Steps,
            });
        }

        var result = new Result(stages, training, data, lora, watch.Elapsed.TotalSeconds, mergedDir, Path.Combine(outDir, "report.md"));
        WriteReports(result);
        return result;
    }

    /// <summary>Loads the trainable parameters saved in a training checkpoint.</summary>
    public static void RestoreTrainable(LlamaForCausalLM model, string checkpoint)
    {
        using var file = SafetensorsFile.Open(checkpoint);
        using var noGrad = TorchSharp.torch.no_grad();
        foreach (var (name, p) in model.named_parameters().Where(p => p.parameter.requires_grad))
        {
            using var value = file.Read("param." + name);
            p.copy_(value);
        }
    }

    private Stage Evaluate(string name, LlamaForCausalLM model, TextTokenizer tokenizer)
    {
        var evaluator = new PerplexityEvaluator(model, tokenizer, _o.EvalMaxLength);
        var perLine = evaluator.PerLine(PerplexityEvaluator.ReadLines(_o.EvalTextPath!, _o.EvalDocuments));
        var rolling = evaluator.Rolling(PerplexityEvaluator.ReadPrefix(_o.EvalTextPath!, _o.EvalDocuments));
        IReadOnlyList<Evaluation.Tasks.TaskScore>? tasks = null;
        if (_o.EvalTasks.Count > 0)
        {
            var taskEvaluator = new Evaluation.Tasks.TaskEvaluator(model, tokenizer);
            tasks = taskEvaluator.Run(_o.EvalTasks.Select(Evaluation.Tasks.TaskRegistry.Create).ToList(),
                _o.EvalTasksDataDirectory ?? throw new LinearizeException("--eval-tasks needs a data directory"), _o.EvalTasksFewshot, _o.EvalTasksLimit).Tasks;
        }

        return new Stage(name, perLine, rolling, Tasks: tasks);
    }

    /// <summary>How the training text was cut from its file, so "trained on X, evaluated on X" cannot read as training on
    /// the test text.</summary>
    private string DataCut(TrainingData.Result data)
    {
        bool plain = !Data.AlpacaDataset.IsAlpacaPath(_o.DataPath);
        string split = _o.Data.TextSplit.ToString().ToLowerInvariant();
        string cut = plain
            ? $"Training text: `{_o.DataPath}` read as {split} (`--text-split {split}`), its first {_o.Data.SkipDocuments} non-empty lines skipped (`--skip-docs`)" +
              (_o.EvalTextPath is not null && _o.Data.TextSplit != Data.TextDataset.Split.Paragraphs &&
               Path.GetFullPath(_o.EvalTextPath) == Path.GetFullPath(_o.DataPath)
                  ? _o.Data.SkipDocuments >= (_o.EvalDocuments ?? int.MaxValue)
                      ? $" (the evaluation reads only the first {_o.EvalDocuments}, so the two do not overlap)"
                      : $" — **the evaluation's {(_o.EvalDocuments is int n ? $"first {Plural.Of(n, "document")}" : "documents")} overlap the training text**"
                  : "")
            : $"Training data: Alpaca records from `{_o.DataPath}`";
        // What was used, not what was asked for: --val-records is capped at 10 % of the records, and a text with too few
        // documents holds out packed sequences instead.
        string sequences = $"{Plural.Of(data.Validation.Count, "sequence")} of {_o.Training.SequenceLength} tokens";
        string validation = data.Validation.Count == 0 ? "none (nothing held out)"
            : _o.ValidationDataPath is not null ? $"`{_o.ValidationDataPath}` ({sequences})"
            : data.HeldOutSequences ? $"{sequences} held out of the packed training text (too few documents to hold out whole ones)"
            : $"{Plural.Of(data.HeldOutRecords, data.Validation.Count > 0 && plain ? "document" : "record")} held out ({sequences})";
        return cut + $"; validation: {validation}.";
    }

    private void WriteReports(Result r)
    {
        var json = new JsonObject
        {
            ["teacher"] = _o.TeacherPath,
            ["method"] = _o.Linearization.Method.Name,
            ["linearization"] = _o.Linearization.ToJson(),
            ["data"] = _o.DataPath,
            ["text_split"] = _o.Data.TextSplit.ToString().ToLowerInvariant(),
            ["skip_docs"] = _o.Data.SkipDocuments,
            ["validation_data"] = _o.ValidationDataPath,
            ["eval_text"] = _o.EvalTextPath,
            ["eval_documents"] = _o.EvalDocuments,
            ["stages"] = new JsonArray(r.Stages.Select(s => (JsonNode)new JsonObject
            {
                ["name"] = s.Name,
                ["per_line_mean_nll"] = s.PerLine?.MeanNll,
                ["per_line_ppl"] = s.PerLine?.Perplexity,
                ["per_line_tokens"] = s.PerLine?.Tokens,
                ["rolling_mean_nll"] = s.Rolling?.MeanNll,
                ["rolling_ppl"] = s.Rolling?.Perplexity,
                ["rolling_tokens"] = s.Rolling?.Tokens,
                ["tasks"] = s.Tasks is null ? null : new JsonObject(s.Tasks.SelectMany(t => t.Metrics.Select(m =>
                    new KeyValuePair<string, JsonNode?>($"{t.Task}/{m.Name}", m.Value)))),
                ["steps"] = s.Steps,
                ["trained_tokens"] = s.TrainedTokens,
                ["train_seconds"] = s.TrainSeconds,
            }).ToArray()),
            ["distill"] = _o.Linearization.IsLolcats && _o.Distill is { } d ? new JsonObject
            {
                ["learning_rate"] = d.LearningRate,
                ["schedule"] = d.Schedule,
                ["mse_factor"] = _o.MseFactor,
                ["xent_factor"] = _o.XentFactor,
                ["epochs"] = d.Epochs,
                ["max_steps"] = d.MaxSteps,
            } : null,
            ["lora"] = new JsonObject
            {
                ["rank"] = _o.Training.Lora.Rank,
                ["alpha"] = _o.Training.Lora.Alpha,
                ["targets"] = new JsonArray(_o.Training.Lora.Targets.Select(t => (JsonNode)t).ToArray()),
                ["trainable_parameters"] = r.Lora.TrainableParameters,
                ["total_parameters"] = r.Lora.TotalParameters,
            },
            ["training"] = new JsonObject
            {
                ["steps"] = r.Training.Steps,
                ["sequences"] = r.Data.Train.Count,
                ["validation_sequences"] = r.Data.Validation.Count,
                ["labelled_tokens_trained"] = r.Training.Tokens,
                ["seconds"] = r.Training.Seconds,
                ["tokens_per_second"] = r.Training.TokensPerSecond,
                ["best_eval_loss"] = r.Training.BestEvalLoss,
                ["final_eval_loss"] = r.Training.FinalEvalLoss,
                ["learning_rate"] = _o.Training.LearningRate,
                ["schedule"] = _o.Training.Schedule,
                ["sequence_length"] = _o.Training.SequenceLength,
                ["batch_size"] = _o.Training.BatchSize,
                ["grad_accum"] = _o.Training.GradientAccumulation,
                ["epochs"] = _o.Training.Epochs,
                ["max_steps"] = _o.Training.MaxSteps,
            },
            ["wall_seconds"] = r.WallSeconds,
            ["merged_model"] = r.MergedDirectory,
        };
        AtomicFile.WriteAllText(Path.Combine(_o.OutputDirectory, "report.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

        var md = new StringBuilder();
        md.AppendLine($"# Linearization report: {_o.Linearization.Method}");
        md.AppendLine();
        md.AppendLine(_o.EvalTextPath is null
            ? $"Teacher `{_o.TeacherPath}`, trained on `{_o.DataPath}`; no evaluation text was given, so nothing was evaluated."
            : $"Teacher `{_o.TeacherPath}`, trained on `{_o.DataPath}`, evaluated on `{_o.EvalTextPath}` ({(_o.EvalDocuments is int docs ? $"first {Plural.Of(docs, "document")}" : "every document")}).");
        md.AppendLine();
        md.AppendLine(DataCut(r.Data));
        md.AppendLine();
        md.AppendLine("| stage | per-line NLL | per-line PPL | rolling-512 NLL | rolling-512 PPL | steps | tokens trained | training time |");
        md.AppendLine("|---|---|---|---|---|---:|---:|---:|");
        foreach (var s in r.Stages)
            md.AppendLine($"| {s.Name} | {s.PerLine?.MeanNll:F4} | {s.PerLine?.Perplexity:F3} | {s.Rolling?.MeanNll:F4} | {s.Rolling?.Perplexity:F3} | " +
                          $"{s.Steps} | {s.TrainedTokens:N0} | {(s.TrainSeconds is double sec ? $"{sec:F0} s" : "")} |");
        md.AppendLine();
        var withTasks = r.Stages.Where(s => s.Tasks is not null).ToList();
        if (withTasks.Count > 0)
        {
            md.AppendLine($"lm-eval tasks ({(_o.EvalTasksLimit is int lim ? $"first {Plural.Of(lim, "document")} per task" : "full files")}" +
                          $"{(_o.EvalTasksFewshot is int f ? $", {f}-shot" : ", zero-shot")}; at this model size every task but LAMBADA is near chance):");
            md.AppendLine();
            md.AppendLine("| task | metric | " + string.Join(" | ", withTasks.Select(s => s.Name)) + " |");
            md.AppendLine("|---|---|" + string.Concat(withTasks.Select(_ => "---:|")));
            foreach (var t in withTasks[0].Tasks!)
                foreach (var m in t.Metrics)
                    md.AppendLine($"| {t.Task} | {m.Name} | " + string.Join(" | ", withTasks.Select(s =>
                        s.Tasks!.First(x => x.Task == t.Task).Metric(m.Name) is { } v ? v.Value.ToString(v.Value >= 100 ? "F2" : "F4") : "")) + " |");
            md.AppendLine();
        }

        md.AppendLine($"- LoRA: rank {_o.Training.Lora.Rank}, alpha {_o.Training.Lora.Alpha} on {string.Join(", ", _o.Training.Lora.Targets)} — " +
                      $"{r.Lora.TrainableParameters:N0} trainable of {r.Lora.TotalParameters:N0} parameters ({r.Lora.TrainableFraction:P3})");
        md.AppendLine($"- Training: {Plural.Of(r.Training.Steps, "step")} × {_o.Training.BatchSize}×{Plural.Of(_o.Training.GradientAccumulation, "sequence")} of {_o.Training.SequenceLength}; " +
                      $"{r.Training.Tokens:N0} labelled tokens; AdamW lr {_o.Training.LearningRate} ({_o.Training.Schedule}); " +
                      $"{r.Training.Seconds:F1} s in training steps, {r.Training.TokensPerSecond:F0} labelled tokens/s");
        md.AppendLine($"- Validation loss: best {r.Training.BestEvalLoss:F4}, final {r.Training.FinalEvalLoss:F4}");
        md.AppendLine($"- Wall time: {r.WallSeconds:F1} s. Merged model: `{r.MergedDirectory}`. Loss curve: `train/loss.png`.");
        AtomicFile.WriteAllText(Path.Combine(_o.OutputDirectory, "report.md"), md.ToString());
    }
}
