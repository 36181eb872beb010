using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Linearize.Checkpoints.Configuration;
using Linearize.Evaluation.Recall;
using Linearize.Workflows;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize lab …</c>: experiments that run end to end and write a report.</summary>
public static class LabCommand
{
    public static Command Create()
    {
        var command = new Command("lab", "End-to-end experiments with a report.");
        command.Add(CreateRecall());
        return command;
    }

    private static Command CreateRecall()
    {
        var task = new DataCommand.RecallTaskCliOptions();
        var output = new Option<string>("--out", "-o") { Description = "Lab directory: data/, teacher/, methods/<method>/, report.md, report.json, recall.png", Required = true };
        var methods = new Option<string?>("--methods")
        {
            Description = "Comma-separated rows: method names, with +neg for β in (0, 2) (delta rule: liger-gdn+neg), +learned for the learned " +
                          "gate (liger-gla+learned), +rmsnorm for the RMSNorm read-out (liger-gla+rmsnorm), +sparseN for LoLA's sparse cache of N pairs (lolcats-sw+sparse16), " +
                          "+sparseN+posthoc for the cache attached after training without it (LoLA's training-free recipe: the row without the cache is trained once and shared) " +
                          $"(default: {string.Join(",", new RecallLabOptions().Methods.Select(m => m.Name))}). Rows that add b_proj or g_proj train them in full beside LoRA",
        };
        var trainSequences = new Option<int>("--train-sequences") { Description = "MQAR training sequences", DefaultValueFactory = _ => new RecallLabOptions().TrainSequences };
        var testSequences = new Option<int>("--test-sequences") { Description = "Held-out sequences every model is scored on", DefaultValueFactory = _ => new RecallLabOptions().TestSequences };
        var warmupSteps = new Option<long>("--warmup-steps") { Description = "Teacher stage 1: steps on short sequences with few pairs (0: none)", DefaultValueFactory = _ => new RecallLabOptions().TeacherWarmup.MaxSteps!.Value };
        var teacherSteps = new Option<long>("--teacher-steps") { Description = "Teacher stage 2: steps on the task itself (all parameters)", DefaultValueFactory = _ => new RecallLabOptions().Teacher.MaxSteps!.Value };
        var recoverySteps = new Option<long>("--recovery-steps") { Description = "LoRA steps for every converted model (and as many attention-transfer steps first for LoLCATs)", DefaultValueFactory = _ => new RecallLabOptions().Recovery.MaxSteps!.Value };
        var hidden = new Option<int>("--hidden") { Description = "Teacher hidden size (heads of 64: hidden / 64 heads)", DefaultValueFactory = _ => new RecallLabOptions().Hidden };
        var layers = new Option<int>("--layers") { Description = "Teacher layers", DefaultValueFactory = _ => new RecallLabOptions().Layers };
        var seed = new Option<int>("--seed") { Description = "Seed of data, initialisation, batch order and LoRA", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads")
        {
            Description = "libtorch threads for the whole lab. The same --seed and --threads give the same numbers; another thread count sums in another order",
            DefaultValueFactory = _ => new RecallLabOptions().Threads,
        };
        var command = new Command("recall",
            "Multi-query associative recall beyond the window: train a Llama teacher with 64-dimensional heads from scratch on MQAR, convert it with each method, " +
            "score every model by key-to-query distance untrained and after the same recovery budget, and write report.md, report.json and recall.png. " +
            "Deterministic: the same --seed and --threads reproduce every number. " +
            "Rerunning on the same --out continues where it stopped; --methods on it adds rows, and the report keeps every row the directory holds.");
        task.AddTo(command);
        task.MinGap.DefaultValueFactory = _ => new RecallLabOptions().Task.MinGap;
        task.Pairs.DefaultValueFactory = _ => new RecallLabOptions().Task.Pairs;
        task.Queries.DefaultValueFactory = _ => new RecallLabOptions().Task.Queries;
        foreach (var o in new Option[] { output, methods, trainSequences, testSequences, warmupSteps, teacherSteps, recoverySteps, hidden, layers, seed, threads })
            command.Add(o);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var defaults = new RecallLabOptions();
            int h = r.GetValue(hidden);
            if (h < 64 || h % 64 != 0)
                throw new LinearizeException($"--hidden must be a positive multiple of 64 (heads of 64), got {h}");
            if (r.GetValue(teacherSteps) < 1 || r.GetValue(recoverySteps) < 1 || r.GetValue(layers) < 1 || r.GetValue(warmupSteps) < 0)
                throw new LinearizeException("--teacher-steps, --recovery-steps and --layers must be at least 1, --warmup-steps at least 0");
            var t = task.Parse(r);
            var options = defaults with
            {
                Task = t,
                WarmupTask = defaults.WarmupTask with { Keys = t.Keys, Values = t.Values, Pairs = Math.Min(defaults.WarmupTask.Pairs, t.Pairs) },
                TeacherWarmup = defaults.TeacherWarmup with { MaxSteps = r.GetValue(warmupSteps), EvalEvery = (int)Math.Max(1, r.GetValue(warmupSteps) / 4) },
                TrainSequences = r.GetValue(trainSequences),
                TestSequences = r.GetValue(testSequences),
                Seed = r.GetValue(seed),
                Threads = r.GetValue(threads),
                Hidden = h,
                Heads = h / 64,
                Layers = r.GetValue(layers),
                Teacher = defaults.Teacher with { MaxSteps = r.GetValue(teacherSteps), SequenceLength = t.SequenceLength, EvalEvery = (int)Math.Max(1, r.GetValue(teacherSteps) / 6) },
                Recovery = defaults.Recovery with { MaxSteps = r.GetValue(recoverySteps), SequenceLength = t.SequenceLength, EvalEvery = (int)Math.Max(1, r.GetValue(recoverySteps) / 2) },
                Distill = defaults.Distill with { MaxSteps = r.GetValue(recoverySteps), SequenceLength = t.SequenceLength, EvalEvery = (int)Math.Max(1, r.GetValue(recoverySteps) / 2) },
                Methods = r.GetValue(methods)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(n => RecallLabMethod.Parse(n, "--methods")).ToArray() ?? defaults.Methods,
            };
            options.Validate();
            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir))
                throw new LinearizeException($"{outDir}: exists and is a file; --out must be a directory");
            Directory.CreateDirectory(outDir);
            using var interruption = Interruption.Listen();
            var err = Console.Error;
            var result = new RecallLab(options).Run(outDir, line => err.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"), (stage, m) =>
            {
                if (m.EvalLoss is double ev)
                    err.WriteLine($"[{DateTime.Now:HH:mm:ss}] {stage}: step {m.Step}, loss {m.Loss:F3}, validation {ev:F3}");
            }, interruption.Token);
            Write(outDir, result);
            if (!result.Completed)
            {
                err.WriteLine($"interrupted; rerun the same command to continue ({outDir})");
                return interruption.ExitCode;
            }

            err.WriteLine($"done in {result.Seconds / 60:F1} min: {Path.Combine(outDir, "report.md")}");
            return 0;
        }));
        return command;
    }

    private static void Write(string outDir, RecallLabResult result)
    {
        var rows = result.Rows;
        if (rows.Count == 0)
            return;
        var md = new StringBuilder();
        var o = result.Options;
        md.AppendLine("# Recall beyond the window (MQAR)").AppendLine();
        md.AppendLine($"Teacher: Llama, {o.Layers} layers, hidden {o.Hidden}, {o.Heads} heads of 64, trained from scratch: {o.TeacherWarmup.MaxSteps} steps " +
                      $"of {o.TeacherWarmup.BatchSize} × {o.WarmupTask.SequenceLength} tokens with {o.WarmupTask.Pairs} pairs, then {o.Teacher.MaxSteps} steps " +
                      $"of {o.Teacher.BatchSize} × {o.Task.SequenceLength} tokens. Task: {o.Task.Pairs} pairs of {o.Task.Keys} keys / {o.Task.Values} values " +
                      $"(chance {1.0 / o.Task.Values:P1}), {o.Task.Queries} queries per sequence, queries at least {o.Task.MinGap} tokens after the pairs; " +
                      $"{o.TestSequences} held-out sequences. Converted models: window {o.Window}; recovery {o.Recovery.MaxSteps} LoRA steps " +
                      $"(r {o.Recovery.Lora.Rank}, {string.Join(",", o.Recovery.Lora.Targets)}; LoLCATs: as many attention-transfer steps first). " +
                      $"Rows that add parameters (the delta rule's b_proj, the learned gate's g_proj) also train them in full. Seed {o.Seed}, {o.Threads} libtorch thread{(o.Threads == 1 ? "" : "s")}. " +
                      $"Lab time {result.Seconds / 60:F1} min.").AppendLine();
        md.Append("| model | stage | state / sequence | recall | ");
        md.AppendLine(string.Join(" | ", RecallEvaluator.Buckets.Select(b => b.Name)) + " | steps |");
        md.AppendLine("|---|---|---:|---:|" + string.Concat(RecallEvaluator.Buckets.Select(_ => "---:|")) + "---:|");
        foreach (var row in rows)
            md.AppendLine($"| {row.Method} | {row.Stage} | {row.StateBytes / 1024.0:F1} KiB | {Pct(row.Recall.Accuracy)} | " +
                          string.Join(" | ", row.Recall.Buckets.Select(b => Pct(b.Accuracy))) + $" | {row.TrainSteps} |");
        Linearize.Checkpoints.AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), md.ToString());
        Linearize.Checkpoints.AtomicFile.WriteAllText(Path.Combine(outDir, "report.json"), JsonSerializer.Serialize(new
        {
            completed = result.Completed,
            seconds = Math.Round(result.Seconds, 1),
            options = new
            {
                task = o.Task, warmup_task = o.WarmupTask, warmup_steps = o.TeacherWarmup.MaxSteps, o.TrainSequences, o.TestSequences, o.Hidden, o.Heads, o.Layers, o.Window, teacher_steps = o.Teacher.MaxSteps,
                recovery_steps = o.Recovery.MaxSteps, methods = o.Methods.Select(m => m.Name), o.Seed, o.Threads,
            },
            rows = rows.Select(x => new
            {
                model = x.Method, stage = x.Stage, state_bytes = x.StateBytes, train_steps = x.TrainSteps, train_seconds = Math.Round(x.TrainSeconds, 1),
                recall = EvalRecallCommand.ToJson(x.Method, x.Recall),
            }),
        }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));

        var xs = Enumerable.Range(0, RecallEvaluator.Buckets.Count).Select(i => (double)i).ToArray();
        var series = rows.Where(x => x.Stage != "converted" && x.Recall.Buckets.Count > 0)
            .Select(x => new Plots.Series($"{x.Method} ({x.StateBytes / 1024.0:F0} KiB)", xs, x.Recall.Buckets.Select(b => double.IsNaN(b.Accuracy) ? 0 : 100 * b.Accuracy).ToArray()))
            .ToList();
        if (series.Count > 0)
            Plots.Line(Path.Combine(outDir, "recall.png"), "MQAR recall by key-to-query distance (after recovery)",
                "distance bucket: " + string.Join(" | ", RecallEvaluator.Buckets.Select(b => b.Name)), "recall (%)", series, zeroBased: true);
    }

    private static string Pct(double x) => double.IsNaN(x) ? "–" : (100 * x).ToString("F1", CultureInfo.InvariantCulture) + " %";
}
