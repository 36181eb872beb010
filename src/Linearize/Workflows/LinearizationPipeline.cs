using System.Diagnostics;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.Evaluation;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;
using Linearize.Training.Lora;
using Linearize.Training;

namespace Linearize.Workflows;

/// <summary>
/// Teacher → converted → LoRA-trained (plus, in full, the parameters a Liger conversion adds: <c>b_proj</c>, <c>g_proj</c>)
/// → merged linear model, with perplexity of each stage on the same text under
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
        // The parameters a Liger conversion adds (b_proj, g_proj) have no LoRA and would stay at their initialisation:
        // trained in full beside the adapters, as the recall lab does.
        var trainingOptions = _o.Training with
        {
            FullModules = _o.Training.FullModules.Union(LigerAttention.AddedParameterFragments(_o.Linearization)).ToArray(),
        };
        var unfrozen = FullTraining.Unfreeze(student, trainingOptions.FullModules);
        if (unfrozen.Tensors > 0)
            log?.Invoke($"also training {unfrozen.Values:N0} parameters in full ({string.Join(", ", trainingOptions.FullModules)})");
        string trainDir = Path.Combine(outDir, "train");
        var trainer = new Trainer(student, data.Train, data.Validation, trainingOptions, trainDir);
        var training = trainer.Run(_o.Resume, cancel, onStep);
        if (!training.Completed)
            return new Result(stages, training, data, lora, watch.Elapsed.TotalSeconds, "", "");

        // Best checkpoint by validation loss when there is one (the reference code means to, but discards it).
        if (training.BestCheckpoint is not null)
            RestoreTrainable(student, training.BestCheckpoint);
        LoraAdapterFile.Save(student, trainingOptions.Lora, Path.Combine(trainDir, "adapter"), convertedDir);
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
        PipelineReport.Write(_o, result);
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
}
