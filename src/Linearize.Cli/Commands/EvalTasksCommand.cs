using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Evaluation.Tasks;
using Linearize.Methods;
using Linearize.Modeling;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize eval tasks</c>: lm-evaluation-harness tasks, scored by its rules (lm-evaluation-harness's prompts, encoding and metrics).</summary>
public static class EvalTasksCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model", "-m")
        {
            Description = "Model(s) to evaluate; give several (--model A --model B) for a side-by-side table with deltas against the first",
            Required = true,
            Arity = ArgumentArity.OneOrMore,
        };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (default: the one found next to each model)" };
        var tasks = new Option<string>("--tasks") { Description = $"Comma-separated lm-eval task names: {string.Join(", ", TaskRegistry.Names)}", DefaultValueFactory = _ => string.Join(",", TaskRegistry.Names) };
        var fewshot = new Option<int?>("--num-fewshot") { Description = "Shots (mmlu: the first N dev items of each subject; the other tasks are zero-shot only). Default 0, as lm-eval" };
        var limit = new Option<int?>("--limit") { Description = "Only the first N documents of each task (mmlu: of each subject), as lm-eval's --limit" };
        var batch = new Option<int>("--batch-size") { Description = "Contexts per forward pass (each shared by its choices)", DefaultValueFactory = _ => 16 };
        var dataDir = new Option<string?>("--data-dir") { Description = "Directory holding piqa/, arc/, hellaswag/, winogrande/, lambada/, mmlu/ (default: $LINEARIZE_SHARED/data, or ../shared/data beside the repository this executable was built in)" };
        var maxLength = new Option<int?>("--max-length") { Description = "Tokens the model sees per request (default: its max_position_embeddings, as lm-eval); longer requests are left-truncated" };
        var json = new Option<bool>("--json") { Description = "Print lm-eval's results JSON instead of a table" };
        var output = new Option<string?>("--output") { Description = "Also write the results JSON to this file" };
        var engineOptions = new EngineCliOptions();
        var logSamples = new Option<string?>("--log-samples") { Description = "Write one JSONL per task and model into this directory: each document's per-choice log-likelihoods and is_greedy" };
        var command = new Command("tasks",
            "Zero-/few-shot tasks exactly as lm-evaluation-harness scores them (piqa, arc_easy, arc_challenge, hellaswag, winogrande, lambada_openai, mmlu): " +
            "same prompts, choices, context/continuation split, truncation and metrics; BOS is added when the tokenizer adds it. Each context is computed " +
            "once and its state (KV cache, or recurrent state and window) is shared by its choices. The decode engine scores by default; " +
            "--engine torch scores with the TorchSharp model (the reference; --batch-size applies to it).");
        foreach (var o in new Option[] { models, tokenizer, tasks, fewshot, limit, batch, dataDir, maxLength, json, output, logSamples })
            command.Add(o);
        engineOptions.AddTo(command);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var taskList = TaskRegistry.Parse(r.GetValue(tasks)!);
            if (r.GetValue(limit) is < 1)
                throw new LinearizeException($"--limit must be at least 1, got {r.GetValue(limit)}");
            if (r.GetValue(fewshot) is < 0)
                throw new LinearizeException($"--num-fewshot must be ≥ 0, got {r.GetValue(fewshot)}");
            string data = r.GetValue(dataDir) ?? DefaultDataDirectory();
            if (!Directory.Exists(data))
                throw new LinearizeException($"{data}: data directory not found (--data-dir)");
            foreach (var t in taskList) // every file first, so a missing one fails before any model runs
                foreach (var f in t.Files)
                    if (!File.Exists(Path.Combine(data, f)))
                        throw new LinearizeException($"{Path.Combine(data, f)}: not found (task {t.Name}; --data-dir)");

            var runs = new List<(string Model, TaskEvaluator.Result Result, JsonObject Config)>();
            foreach (var path in r.GetValue(models)!)
            {
                // The engine is packed straight from the files; the TorchSharp model is loaded only for --engine torch.
                var source = ModelSource.Resolve(path, r.GetValue(tokenizer));
                var modelConfig = source.LoadConfig();
                var tok = ModelLoader.LoadTokenizer(source, modelConfig);
                if (r.GetValue(maxLength) is int ml)
                    ContextLimit.Check(modelConfig, ml, "--max-length");
                using var engine = engineOptions.Load(r, source);
                using var llama = engine is null ? ModelLoader.Load(source) : null;
                int contextLength = r.GetValue(maxLength) ?? modelConfig.MaxPositionEmbeddings;
                var evaluator = engine is null
                    ? new TaskEvaluator(llama!, tok, contextLength, r.GetValue(batch))
                    : new TaskEvaluator(new EngineLoglikelihoodScorer(engine, tok, contextLength));
                Console.Error.WriteLine($"• {path}: {string.Join(", ", taskList.Select(t => t.Name))} (max length {evaluator.Scorer.MaxLength}, BOS {(evaluator.Scorer.AddsBos ? "added" : "not added")})");
                var result = RunWithProgress(evaluator, taskList, data, r.GetValue(fewshot), r.GetValue(limit));
                Console.Error.WriteLine($"• {path}: {Plural.Of(result.Requests, "request", "N0")}, {result.Tokens:N0} tokens in {result.Seconds:F1} s ({result.TokensPerSecond:F0} tokens/s)");
                var config = new JsonObject
                {
                    ["model"] = path,
                    ["tokenizer"] = source.TokenizerPath,
                    ["num_fewshot"] = r.GetValue(fewshot),
                    ["limit"] = r.GetValue(limit),
                    ["batch_size"] = r.GetValue(batch),
                    ["engine"] = engine is null ? "torch" : engine.Describe(),
                    ["max_length"] = evaluator.Scorer.MaxLength,
                    ["add_bos_token"] = evaluator.Scorer.AddsBos,
                    ["data_dir"] = data,
                    ["requests"] = result.Requests,
                    ["tokens"] = result.Tokens,
                    ["seconds"] = Math.Round(result.Seconds, 3),
                    ["tokens_per_second"] = Math.Round(result.TokensPerSecond, 1),
                };
                runs.Add((path, result, config));
                if (r.GetValue(logSamples) is string dir)
                    WriteSamples(dir, path, runs.Count - 1, result);
            }

            var jsonRuns = runs.Select(x => ResultsJson(x.Result, x.Config)).ToList();
            JsonNode document = jsonRuns.Count == 1 ? jsonRuns[0] : new JsonObject { ["models"] = new JsonArray(jsonRuns.ToArray()) };
            string text = document.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(output) is string file)
                AtomicFile.WriteAllText(file, text + "\n");
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(text);
                return 0;
            }

            ConsoleUi.Out.Write(Table(runs.Select(x => (x.Model, x.Result)).ToList()));
            foreach (var note in runs[0].Result.Tasks.Where(t => t.Note is not null || t.Skipped > 0))
                Console.Out.WriteLine($"{note.Task}: {note.Note}{(note.Skipped > 0 ? $"{(note.Note is null ? "" : "; ")}{Plural.Of(note.Skipped, "document")} skipped: a continuation longer than the model's context" : "")}");
            return 0;
        }));
        return command;
    }

    /// <summary><c>data/</c> of the shared folder (<see cref="SharedFolder"/>); without one, a path that the task
    /// reader's error will name together with --data-dir and LINEARIZE_SHARED.</summary>
    public static string DefaultDataDirectory() =>
        SharedFolder.Find() is string shared ? Path.Combine(shared, "data") : Path.GetFullPath(Path.Combine("..", "shared", "data"));

    private static TaskEvaluator.Result RunWithProgress(TaskEvaluator evaluator, IReadOnlyList<EvalTask> tasks, string data, int? fewshot, int? limit)
    {
        if (!ConsoleUi.Interactive)
        {
            var last = Stopwatch.StartNew();
            return evaluator.Run(tasks, data, fewshot, limit, p =>
            {
                if (last.Elapsed.TotalSeconds < 10 && p.Done != p.Total)
                    return;
                last.Restart();
                string eta = p.Done == 0 || p.Done == p.Total ? "" : $", task ETA {TimeSpan.FromSeconds(p.TaskElapsed.TotalSeconds * (p.Total - p.Done) / p.Done):hh\\:mm\\:ss}";
                Console.Error.WriteLine($"  {p.Task}: {p.Done}/{Plural.Of(p.Total, "request")}, {p.TokensPerSecond:F0} tokens/s, elapsed {p.Elapsed:hh\\:mm\\:ss}{eta}");
            });
        }

        TaskEvaluator.Result result = null!;
        ConsoleUi.Err.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var bars = new Dictionary<string, ProgressTask>();
                result = evaluator.Run(tasks, data, fewshot, limit, p =>
                {
                    if (!bars.TryGetValue(p.Task, out var bar))
                        bars[p.Task] = bar = ctx.AddTask(p.Task);
                    bar.MaxValue = Math.Max(1, p.Total);
                    bar.Value = p.Done;
                    bar.Description = Markup.Escape($"{p.Task} {p.Done}/{p.Total} ({p.TokensPerSecond:F0} tok/s)");
                });
            });
        return result;
    }

    /// <summary>lm-eval's results shape: <c>{"results": {"piqa": {"alias": …, "acc,none": …, "acc_stderr,none": …}}, "groups": …,
    /// "n-samples": …, "config": …}</c>; MMLU's subjects and categories appear under results too, the groups under groups.</summary>
    public static JsonObject ResultsJson(TaskEvaluator.Result result, JsonObject config)
    {
        var results = new JsonObject();
        var groups = new JsonObject();
        var samples = new JsonObject();
        JsonObject Entry(TaskScore t, string alias)
        {
            var o = new JsonObject { ["alias"] = alias };
            foreach (var m in t.Metrics)
            {
                o[$"{m.Name},none"] = m.Value;
                o[$"{m.Name}_stderr,none"] = m.Stderr is double s ? s : "N/A";
            }

            return o;
        }

        foreach (var t in result.Tasks)
        {
            results[t.Task] = Entry(t, t.Task);
            samples[t.Task] = new JsonObject { ["original"] = t.Documents + t.Skipped, ["effective"] = t.Documents };
            if (t.Note is not null || t.Skipped > 0)
                results[t.Task]!["note"] = string.Join("; ", new[] { t.Note, t.Skipped > 0 ? $"{Plural.Of(t.Skipped, "document")} skipped (continuation longer than the model's context)" : null }.Where(x => x is not null));
            if (t.Subtasks.Count == 0)
                continue;
            groups[t.Task] = Entry(t, t.Task);
            foreach (var category in t.Subtasks)
            {
                results[category.Task] = Entry(category, " - " + category.Task["mmlu_".Length..].Replace('_', ' '));
                groups[category.Task] = Entry(category, " - " + category.Task["mmlu_".Length..].Replace('_', ' '));
                foreach (var subject in category.Subtasks)
                {
                    results[subject.Task] = Entry(subject, "  - " + subject.Task["mmlu_".Length..].Replace('_', ' '));
                    samples[subject.Task] = new JsonObject { ["original"] = subject.Documents, ["effective"] = subject.Documents };
                }
            }
        }

        return new JsonObject { ["results"] = results, ["groups"] = groups, ["n-samples"] = samples, ["config"] = config };
    }

    /// <summary>Short, distinct column labels: the last path component, or the last two where those collide
    /// (<c>run-a/merged</c>, <c>run-b/merged</c>).</summary>
    internal static List<string> Labels(IReadOnlyList<string> models)
    {
        string Tail(string m, int parts) =>
            string.Join("/", Path.TrimEndingDirectorySeparator(m).Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).TakeLast(parts));
        var labels = models.Select(m => Tail(m, 1)).ToList();
        for (int i = 0; i < labels.Count; i++)
            if (labels.Count(l => l == labels[i]) > 1)
                labels = labels.Select((l, j) => l == labels[i] ? Tail(models[j], 2) : l).ToList();
        return labels;
    }

    private static Table Table(IReadOnlyList<(string Model, TaskEvaluator.Result Result)> runs)
    {
        var table = new Table().AddColumn("Tasks").AddColumn("Metric").AddColumn(new TableColumn("n").RightAligned());
        var labels = Labels(runs.Select(r => r.Model).ToList());
        foreach (var label in labels)
        {
            table.AddColumn(new TableColumn(Markup.Escape(label)).RightAligned());
            table.AddColumn(new TableColumn("± Stderr").RightAligned());
        }

        foreach (var label in labels.Skip(1))
            table.AddColumn(new TableColumn(Markup.Escape($"Δ {label}")).RightAligned());

        IEnumerable<(TaskScore Score, string Label)> Rows(TaskEvaluator.Result r) =>
            r.Tasks.SelectMany(t => new[] { (t, t.Task) }.Concat(t.Subtasks.Select(c => (c, " - " + c.Task))));
        var first = Rows(runs[0].Result).ToList();
        for (int row = 0; row < first.Count; row++)
        {
            var (score, label) = first[row];
            foreach (var metric in score.Metrics)
            {
                var cells = new List<string> { Markup.Escape(label), metric.Name, score.Documents.ToString(CultureInfo.InvariantCulture) };
                var values = runs.Select(x => Rows(x.Result).ElementAt(row).Score.Metric(metric.Name)).ToList();
                foreach (var v in values)
                {
                    cells.Add(Format(v?.Value));
                    cells.Add(v?.Stderr is double s ? Format(s) : "N/A");
                }

                foreach (var v in values.Skip(1))
                    cells.Add(v is null || values[0] is null ? "" : Delta(metric.Name, values[0]!.Value, v.Value));
                table.AddRow(cells.ToArray());
            }
        }

        return table;
    }

    /// <summary>A model's change against the first. Perplexities span orders of magnitude (an untrained conversion's
    /// LAMBADA perplexity can be 10^11), so theirs is a ratio (×); accuracies differ by a difference.</summary>
    public static string Delta(string metric, double baseline, double value)
    {
        if (!metric.StartsWith("perplexity", StringComparison.Ordinal))
            return (value - baseline).ToString("+0.0000;-0.0000", CultureInfo.InvariantCulture);
        if (baseline <= 0 || !double.IsFinite(baseline) || !double.IsFinite(value))
            return "";
        double ratio = value / baseline;
        return "×" + (ratio is >= 1e-3 and < 1e4 ? ratio.ToString(ratio >= 100 ? "F0" : "F3", CultureInfo.InvariantCulture)
                                                : ratio.ToString("0.00e+0", CultureInfo.InvariantCulture));
    }

    private static string Format(double? v) => v is double x ? x.ToString(x >= 100 ? "F2" : "F4", CultureInfo.InvariantCulture) : "";

    private static void WriteSamples(string dir, string model, int index, TaskEvaluator.Result result)
    {
        Directory.CreateDirectory(dir);
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(model));
        foreach (var t in result.Tasks)
        {
            string path = Path.Combine(dir, $"samples_{t.Task}_{index}_{name}.jsonl");
            var lines = t.Samples.Select(s => new JsonObject
            {
                ["doc_id"] = s.DocId,
                ["subject"] = s.Subject,
                ["target"] = s.Gold,
                ["arguments"] = new JsonArray(s.Requests.Select(q => (JsonNode)new JsonArray(q.Context, q.Continuation)).ToArray()),
                ["resps"] = new JsonArray(s.Scores.Select(x => (JsonNode)new JsonArray(x.LogLikelihood, x.IsGreedy)).ToArray()),
                ["metrics"] = new JsonObject(s.Metrics.Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, kv.Value))),
            }.ToJsonString());
            AtomicFile.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));
        }
    }
}
