using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Workflows.Benchmarks;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize bench prefill</c>: time to the first token on the engine, per model and prompt length.</summary>
public static class BenchPrefillCommand
{
    private sealed record Row(int PromptTokens, double? Seconds, double? TokensPerSecond, long StateBytes, string? Note);

    private sealed record Run(string Model, string Path, string Mixers, string WeightDType, List<Row> Rows, long PeakRssBytes);

    public static Command Create()
    {
        var models = BenchModelOptions.Models();
        var tokenizer = BenchModelOptions.Tokenizer();
        var engineOptions = new EngineCliOptions();
        var lengths = new Option<string>("--prompt-tokens") { Description = "Comma-separated prompt lengths", DefaultValueFactory = _ => "512,4096,16384" };
        var repeat = new Option<int>("--repeat") { Description = "Timed runs per length (after one warm-up prefill); the best is reported", DefaultValueFactory = _ => 2 };
        var chunk = new Option<int>("--prefill-chunk") { Description = "Prompt tokens per engine block", DefaultValueFactory = _ => new EngineOptions().PrefillChunk };
        var contend = new Option<int>("--contend") { Description = "Run N busy processes beside the measurement (a shared machine)", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var plot = new Option<string?>("--plot") { Description = "Also write a PNG: prompt tokens/s against prompt length, every model in one figure" };
        var command = new Command("prefill",
            "Per prompt length: seconds from a prompt of random tokens to the logits of its last token (time to first token) on the engine, " +
            "and prompt tokens/s. A model with softmax layers is not run past its max_position_embeddings.");
        command.Add(models);
        command.Add(tokenizer);
        engineOptions.AddTo(command);
        command.Add(lengths);
        command.Add(repeat);
        command.Add(chunk);
        command.Add(contend);
        command.Add(json);
        command.Add(plot);
        command.SetAction(r => CliRunner.Run(() =>
        {
            if (!engineOptions.UseEngine(r))
                throw new LinearizeException("bench prefill measures the engine; drop --engine torch (bench throughput times TorchSharp's prefill)");
            var prompts = r.GetValue(lengths)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => int.TryParse(x, out int v) && v > 0 ? v : throw new LinearizeException($"--prompt-tokens: '{x}' is not a positive integer")).ToArray();
            int reps = r.GetValue(repeat), blocks = r.GetValue(chunk);
            if (reps < 1 || blocks < 1)
                throw new LinearizeException("--repeat and --prefill-chunk must be at least 1");
            var options = engineOptions.Parse(r) with { PrefillChunk = blocks };
            var runs = new List<Run>();
            var paths = r.GetValue(models)!;
            using var contention = new Contention(r.GetValue(contend));
            ConsoleUi.WithProgress("prefill", progress =>
            {
                foreach (string path in paths)
                {
                    var source = ModelSource.Resolve(path, r.GetValue(tokenizer));
                    PeakMemory.Reset();
                    using var engine = Engines.Load(source, options);
                    var config = engine.Config;
                    var mixers = string.Join("; ", Engines.DescribeMixers(config));
                    bool bounded = MixerFactory.HasGrowingCache(config);
                    var rows = new List<Row>();
                    var random = new Random(0);
                    Measure(engine, Enumerable.Range(0, Math.Min(64, prompts.Min())).Select(_ => random.Next(config.VocabSize)).ToArray()); // warm-up
                    foreach (int length in prompts)
                    {
                        if (bounded && length > config.MaxPositionEmbeddings)
                        {
                            rows.Add(new Row(length, null, null, 0, $"beyond its {config.MaxPositionEmbeddings} positions"));
                            progress.Report((runs.Count * prompts.Length + rows.Count, paths.Length * prompts.Length));
                            continue;
                        }

                        var ids = Enumerable.Range(0, length).Select(_ => random.Next(config.VocabSize)).ToArray();
                        double best = double.MaxValue;
                        long state = 0;
                        for (int i = 0; i < reps; i++)
                            (best, state) = (Math.Min(best, Measure(engine, ids, out long s)), s);
                        rows.Add(new Row(length, best, length / best, state, null));
                        progress.Report((runs.Count * prompts.Length + rows.Count, paths.Length * prompts.Length));
                    }

                    runs.Add(new Run(BenchModelOptions.Name(path), path, mixers, EngineOptions.FormatName(engine.Options.Weights), rows, PeakMemory.Bytes()));
                }

                return 0;
            });

            string title = $"engine prefill, {EngineOptions.FormatName(options.Weights)} weights" +
                           (options.BFloat16Products ? " × bfloat16 activations" : "") + $", {options.Threads} threads, blocks of {blocks}" +
                           (contention.Count > 0 ? $", beside {contention.Count} busy processes" : "");
            if (r.GetValue(plot) is string png)
            {
                var series = runs.Select(run =>
                {
                    var measured = run.Rows.Where(x => x.TokensPerSecond is not null).ToArray();
                    return new Plots.Series($"{run.Model}: prompt tok/s", measured.Select(x => (double)x.PromptTokens).ToArray(),
                        measured.Select(x => x.TokensPerSecond!.Value).ToArray(), Markers: true);
                }).ToList();
                Plots.Line(png, title, "prompt tokens", "prompt tokens per second", series, logX: true, zeroBased: true);
                Console.Error.WriteLine($"wrote {png}");
            }

            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    threads = options.Threads,
                    weight_dtype = EngineOptions.FormatName(options.Weights),
                    bf16_products = options.BFloat16Products,
                    prefill_chunk = blocks,
                    contend = contention.Count,
                    models = runs.Select(run => new
                    {
                        model = run.Path,
                        mixers = run.Mixers,
                        weight_dtype = run.WeightDType,
                        peak_rss_bytes = run.PeakRssBytes,
                        results = run.Rows.Select(x => new
                        {
                            prompt_tokens = x.PromptTokens,
                            seconds = x.Seconds is double s ? Math.Round(s, 4) : (double?)null,
                            tokens_per_second = x.TokensPerSecond is double t ? Math.Round(t, 1) : (double?)null,
                            state_bytes = x.StateBytes,
                            note = x.Note,
                        }),
                    }),
                }));
                return 0;
            }

            var table = new Table().Title(Markup.Escape(title)).AddColumn("model").AddColumn(new TableColumn("prompt").RightAligned())
                .AddColumn(new TableColumn("to first token").RightAligned()).AddColumn(new TableColumn("prompt tok/s").RightAligned())
                .AddColumn(new TableColumn("state/seq").RightAligned());
            foreach (var run in runs)
                foreach (var x in run.Rows)
                    table.AddRow(Markup.Escape(run.Model), x.PromptTokens.ToString("N0"),
                        x.Seconds is double s ? $"{s:F3} s" : "—", x.TokensPerSecond is double t ? t.ToString("F0") : Markup.Escape(x.Note ?? "—"),
                        x.Seconds is null ? "" : ConsoleUi.Bytes(x.StateBytes));
            ConsoleUi.Out.Write(table);
            foreach (var run in runs)
                ConsoleUi.Out.MarkupLine(Markup.Escape($"{run.Model}: {run.Mixers}; peak RSS {ConsoleUi.Bytes(run.PeakRssBytes)}"));
            return 0;
        }));
        return command;
    }

    private static double Measure(DecodeEngine engine, int[] ids) => Measure(engine, ids, out _);

    /// <summary>Seconds from an empty sequence to the logits after <paramref name="ids"/>.</summary>
    private static double Measure(DecodeEngine engine, int[] ids, out long stateBytes)
    {
        using var seq = engine.CreateSequence();
        var watch = Stopwatch.StartNew();
        engine.Prefill(seq, ids);
        double seconds = watch.Elapsed.TotalSeconds;
        stateBytes = seq.StateBytes;
        return seconds;
    }
}
