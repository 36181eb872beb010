using System.Diagnostics;
using System.Text.Json;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.Evaluation.Recall;
using Linearize.Inference;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Training.Distillation;
using Linearize.Training.Lora;
using Linearize.Training;
using TorchSharp;

namespace Linearize.Workflows;

/// <summary>
/// The recall lab. Trains a teacher with 64-dimensional heads from scratch on MQAR, converts it with each
/// method, and measures every model on held-out sequences by key-to-query distance, untrained and after the same
/// recovery budget (LoRA; attention transfer first for LoLCATs). What only a recurrent state can do is recall pairs
/// from beyond the window, so the buckets past 64 tokens are the ones that separate the methods. Each stage writes its
/// result beside its checkpoints, so an interrupted lab continues where it stopped.
/// </summary>
/// <remarks>
/// Every number is a function of <see cref="RecallLabOptions.Seed"/> and <see cref="RecallLabOptions.Threads"/>: data,
/// initialisations, batch order and LoRA all draw from seeded generators derived from the one seed, and libtorch runs
/// with the given thread count for the whole lab (a parallel reduction's summation order depends on it).
/// </remarks>
public sealed class RecallLab(RecallLabOptions options)
{
    /// <summary>NaN accuracies (an empty bucket) are written as "NaN" rather than refused.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public RecallLabResult Run(string outDir, Action<string>? log, Action<string, TrainingMetrics>? onStep, CancellationToken cancel)
    {
        options.Validate();
        int threadsBefore = torch.get_num_threads();
        torch.set_num_threads(options.Threads);
        try
        {
            return RunWithThreads(outDir, log, onStep, cancel);
        }
        finally
        {
            torch.set_num_threads(threadsBefore);
        }
    }

    /// <summary>The seed of data set <paramref name="stream"/> (0–7): the streams of two lab seeds never coincide.</summary>
    private int DataSeed(int stream) => 8 * options.Seed + stream;

    /// <summary>A training stage's options with the lab's seed (batch order, and the global generator the stage starts from).</summary>
    private TrainingOptions Seeded(TrainingOptions stage) => stage with { Seed = options.Seed };

    private RecallLabResult RunWithThreads(string outDir, Action<string>? log, Action<string, TrainingMetrics>? onStep, CancellationToken cancel)
    {
        var watch = Stopwatch.StartNew();
        RefuseOtherOptions(outDir);
        var task = options.Task;
        var train = RecallGenerator.Generate(task, options.TrainSequences, DataSeed(1));
        var test = RecallGenerator.Generate(task, options.TestSequences, DataSeed(2));
        var validation = RecallGenerator.Generate(task, Math.Max(16, options.TestSequences / 4), DataSeed(3));
        string dataDir = Path.Combine(outDir, "data");
        if (!File.Exists(Path.Combine(dataDir, "test.jsonl")))
        {
            RecallGenerator.Write(Path.Combine(dataDir, "train.jsonl"), train, task);
            RecallGenerator.Write(Path.Combine(dataDir, "test.jsonl"), test, task);
        }

        var trainExamples = train.Select(RecallGenerator.ToTraining).ToList();
        var valExamples = validation.Select(RecallGenerator.ToTraining).ToList();
        var rows = new List<RecallLabRow>();

        using var teacher = Teacher(Path.Combine(outDir, "teacher"), trainExamples, valExamples, log, onStep, cancel, out var teacherRow);
        if (teacher is null)
            return new RecallLabResult(options, rows, watch.Elapsed.TotalSeconds, false);
        rows.Add(teacherRow! with { Recall = RecallEvaluator.Evaluate(teacher, test), StateBytes = StateBytes(teacher) });
        log?.Invoke($"teacher: recall {rows[0].Recall.Accuracy:P1}");

        foreach (var method in options.Methods)
        {
            string dir = Path.Combine(outDir, "methods", method.Name);
            string resultFile = Path.Combine(dir, "result.json");
            if (File.Exists(resultFile))
            {
                rows.AddRange(JsonSerializer.Deserialize<List<RecallLabRow>>(File.ReadAllText(resultFile), Json)!);
                log?.Invoke($"{method}: reusing {resultFile}");
                continue;
            }

            var methodRows = Method(method, dir, teacher, trainExamples, valExamples, test, log, onStep, cancel);
            if (methodRows is null)
                return new RecallLabResult(options, rows, watch.Elapsed.TotalSeconds, false);
            AtomicFile.WriteAllText(resultFile, JsonSerializer.Serialize(methodRows, Json));
            rows.AddRange(methodRows);
        }

        // Rows an earlier run on this directory added (the options match, lab.json says so) stay in the report.
        var asked = options.Methods.Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        string methodsDir = Path.Combine(outDir, "methods");
        if (Directory.Exists(methodsDir))
            foreach (string dir in Directory.EnumerateDirectories(methodsDir).Order(StringComparer.Ordinal))
                if (!asked.Contains(Path.GetFileName(dir)) && File.Exists(Path.Combine(dir, "result.json")))
                    rows.AddRange(JsonSerializer.Deserialize<List<RecallLabRow>>(File.ReadAllText(Path.Combine(dir, "result.json")), Json)!);

        return new RecallLabResult(options, rows, watch.Elapsed.TotalSeconds, true);
    }

    private LlamaForCausalLM? Teacher(string dir, List<TrainingExample> train, List<TrainingExample> validation, Action<string>? log,
        Action<string, TrainingMetrics>? onStep, CancellationToken cancel, out RecallLabRow? row)
    {
        string modelDir = Path.Combine(dir, "model");
        string trainingFile = Path.Combine(dir, "training.json");
        if (File.Exists(Path.Combine(modelDir, "config.json")) && File.Exists(trainingFile))
        {
            log?.Invoke($"teacher: reusing {modelDir}");
            row = JsonSerializer.Deserialize<RecallLabRow>(File.ReadAllText(trainingFile), Json);
            return ModelLoader.Load(ModelSource.Resolve(modelDir, null));
        }

        var json = ModelPresets.Llama(options.Hidden, options.Intermediate, options.Layers, options.Heads, options.Heads,
            options.Task.VocabularySize, options.Task.SequenceLength, theta: 10000, tied: false, eps: 1e-5);
        var model = new LlamaForCausalLM(LlamaConfig.FromJson(json, "recall lab teacher"));
        try
        {
            RandomWeights.Initialize(model, (ulong)options.Seed);
            FullTraining.Unfreeze(model, new[] { "*" });

            // Stage 1, the curriculum's short sequences (see RecallLabOptions.WarmupTask).
            long warmupSteps = 0;
            double warmupSeconds = 0;
            if (options.TeacherWarmup.MaxSteps > 0)
            {
                var warmup = RecallGenerator.Generate(options.WarmupTask, options.WarmupSequences, DataSeed(4))
                    .Select(RecallGenerator.ToTraining).ToList();
                var warmupVal = RecallGenerator.Generate(options.WarmupTask, 64, DataSeed(5)).Select(RecallGenerator.ToTraining).ToList();
                var warmupDir = Path.Combine(dir, "warmup");
                log?.Invoke($"teacher: stage 1, {options.TeacherWarmup.MaxSteps} steps of {options.TeacherWarmup.BatchSize} × {options.WarmupTask.SequenceLength} tokens ({options.WarmupTask.Pairs} pairs)");
                var w = new Trainer(model, warmup, warmupVal, Seeded(options.TeacherWarmup) with { FullModules = new[] { "*" } }, warmupDir)
                    .RunOrResume(cancel, m => onStep?.Invoke("teacher stage 1", m));
                if (!w.Completed)
                {
                    model.Dispose();
                    row = null;
                    return null;
                }

                // The last weights, not the best: stage 2 continues the run.
                LinearizationPipeline.RestoreTrainable(model, w.LastCheckpoint);
                warmupSteps = w.Steps;
                warmupSeconds = w.Seconds;
            }

            var runDir = Path.Combine(dir, "run");
            log?.Invoke($"teacher: {model.ParameterCount():N0} parameters, stage 2: {options.Teacher.MaxSteps} steps of {options.Teacher.BatchSize} × {options.Task.SequenceLength} tokens ({options.Task.Pairs} pairs)");
            var trainer = new Trainer(model, train, validation, Seeded(options.Teacher) with { FullModules = new[] { "*" } }, runDir);
            var result = trainer.RunOrResume(cancel, m => onStep?.Invoke("teacher", m));
            if (!result.Completed)
            {
                model.Dispose();
                row = null;
                return null;
            }

            LinearizationPipeline.RestoreTrainable(model, result.BestCheckpoint ?? result.LastCheckpoint);
            foreach (var p in model.parameters())
                p.requires_grad = false;
            model.eval();
            ModelLoader.SaveHuggingFace(model, model.Config, modelDir, null);
            row = new RecallLabRow("teacher", "trained", 0, new RecallResult(0, 0, 0, Array.Empty<RecallBucket>()), warmupSteps + result.Steps,
                warmupSeconds + result.Seconds);
            AtomicFile.WriteAllText(trainingFile, JsonSerializer.Serialize(row, Json));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private List<RecallLabRow>? Method(RecallLabMethod row, string dir, LlamaForCausalLM teacher, List<TrainingExample> train,
        List<TrainingExample> validation, List<RecallExample> test, Action<string>? log, Action<string, TrainingMetrics>? onStep,
        CancellationToken cancel)
    {
        // A row whose cache comes after training (LoLA's training-free recipe) trains exactly its row without the cache,
        // in that row's own directories: the two rows share one training, and whichever runs second reuses it.
        var trained = row.Trained;
        string trainDir = row.CacheAfterTraining ? Path.Combine(Path.GetDirectoryName(dir)!, trained.Name) : dir;
        var lin = Config(trained);
        using var student = Converter.Convert(teacher, lin);
        using var cached = row.CacheAfterTraining ? Converter.Convert(teacher, Config(row)) : null;
        var evaluated = cached ?? student;
        long state = StateBytes(evaluated);
        var rows = new List<RecallLabRow> { new(row.Name, "converted", state, RecallEvaluator.Evaluate(evaluated, test), 0, 0) };
        log?.Invoke($"{row}: converted, recall {rows[0].Recall.Accuracy:P1}");
        long steps = 0;
        double seconds = 0;
        foreach (var p in student.parameters())
            p.requires_grad = false;

        if (lin.IsLolcats)
        {
            foreach (var layer in student.Model.Layers)
                if (layer.SelfAttention is LolcatsAttention a)
                    foreach (var p in a.TransferParameters)
                        p.requires_grad = true;
            string distillDir = Path.Combine(trainDir, "distill");
            var distill = new Trainer(student, train, validation, Seeded(options.Distill), distillDir, new AttentionTransferObjective());
            var d = distill.RunOrResume(cancel, m => onStep?.Invoke($"{trained} transfer", m));
            if (!d.Completed)
                return null;
            LinearizationPipeline.RestoreTrainable(student, d.BestCheckpoint ?? d.LastCheckpoint);
            foreach (var p in student.parameters())
                p.requires_grad = false;
            steps += d.Steps;
            seconds += d.Seconds;
        }

        LoraInjector.Inject(student, options.Recovery.Lora, (ulong)options.Seed);
        var recovery = Seeded(options.Recovery);
        if (LigerAttention.AddedParameterFragments(lin) is { Count: > 0 } added)
        {
            // b_proj and g_proj are what the teacher cannot supply (LigerAttention's remarks); LoRA leaves them frozen,
            // so they are trained in full beside the adapters, or β would stay σ(0) = ½ and the gate at its start.
            recovery = recovery with { FullModules = added };
            FullTraining.Unfreeze(student, recovery.FullModules);
        }

        string recoveryDir = Path.Combine(trainDir, "recovery");
        var trainer = new Trainer(student, train, validation, recovery, recoveryDir);
        var r = trainer.RunOrResume(cancel, m => onStep?.Invoke($"{trained} LoRA", m));
        if (!r.Completed)
            return null;
        LinearizationPipeline.RestoreTrainable(student, r.BestCheckpoint ?? r.LastCheckpoint);
        if (cached is not null)
        {
            // The cache adds no parameters: the trained weights (LoRA included) load into the converted model with it.
            LoraInjector.Inject(cached, options.Recovery.Lora, (ulong)options.Seed);
            cached.load_state_dict(student.state_dict(), strict: true);
        }

        evaluated.eval();
        rows.Add(new RecallLabRow(row.Name, "recovered", state, RecallEvaluator.Evaluate(evaluated, test), steps + r.Steps, seconds + r.Seconds));
        log?.Invoke($"{row}: recovered, recall {rows[1].Recall.Accuracy:P1}");
        return rows;
    }

    private LinearizationConfig Config(RecallLabMethod row) => new()
    {
        Method = row.Method,
        Liger = row.Liger(new LigerOptions { Family = row.Method.Family ?? LigerFamily.Gla, Window = options.Window }),
        Lolcats = row.Lolcats(new LolcatsOptions { Shape = row.Method.Shape ?? LolcatsWindowShape.Sw, Window = options.Window }),
    };

    /// <summary>
    /// Rows reused from <paramref name="outDir"/> must come from the same options (the thread count included, which no
    /// training checkpoint records), or the report would mix two labs: <c>lab.json</c> holds them, and another run on
    /// the same directory must match it. Rows may be added (<see cref="RecallLabOptions.Methods"/> is not compared).
    /// </summary>
    private void RefuseOtherOptions(string outDir)
    {
        string file = Path.Combine(outDir, "lab.json");
        string current = JsonSerializer.Serialize(options with { Methods = Array.Empty<RecallLabMethod>() }, Json);
        if (File.Exists(file) && File.ReadAllText(file) != current)
            throw new LinearizeException($"{outDir}: holds a lab run with other options ({file}: seed, threads, steps, task); rerun with the same ones, or give a new --out");
        AtomicFile.WriteAllText(file, current);
    }

    /// <summary>Bytes of decoding state one sequence holds after the task's length (the engine's own accounting).</summary>
    private long StateBytes(LlamaForCausalLM model)
    {
        using var engine = Engines.Create(model, new EngineOptions { Threads = 1 });
        using var seq = engine.CreateSyntheticSequence(options.Task.SequenceLength);
        return seq.StateBytes;
    }
}
