using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Generation;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Workflows.Benchmarks;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize bench …</c>: end-to-end speed measurements (tables, never assertions).</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks that print tables.");
        command.Add(CreateThroughput());
        command.Add(CreateDecode());
        command.Add(BenchPrefillCommand.Create());
        command.Add(BenchMemoryCommand.Create());
        command.Add(BenchServeCommand.Create());
        return command;
    }

    private static Command CreateDecode()
    {
        var models = BenchModelOptions.Models();
        var tokenizer = BenchModelOptions.Tokenizer();
        var engineOptions = new EngineCliOptions();
        var contexts = new Option<string>("--contexts") { Description = "Comma-separated context lengths", DefaultValueFactory = _ => "256,1024,4096,16384" };
        var newTokens = new Option<int>("--new-tokens") { Description = "Steps timed after each context (after 4 warm-up steps)", DefaultValueFactory = _ => 32 };
        var batch = new Option<int>("--batch") { Description = "Sequences decoded together; tokens/s is the aggregate", DefaultValueFactory = _ => 1 };
        var fill = new Option<string>("--fill")
        {
            Description = "How the context is made: 'synthetic' (state of the right size with random values: fast, and a step's cost does not depend on the values) or 'prefill' (random tokens through the model)",
            DefaultValueFactory = _ => "synthetic",
        };
        fill.AcceptOnlyFromAmong("synthetic", "prefill");
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "Context tokens per prefill forward pass (--fill prefill)", DefaultValueFactory = _ => 512 };
        var noBandwidth = new Option<bool>("--no-bandwidth")
        {
            Description = "Skip both floors: the memory-bandwidth probe of a fresh buffer before the run ('of bw'), and the plain reads " +
                          "of the model's own matrices alternated with up to 16 extra steps after each row's timed ones ('of floor': " +
                          "median read time, scaled to the step's bytes, over the median of those steps)",
        };
        var invariant = new Option<bool>("--batch-invariant") { Description = "Batch-invariant kernels, as 'serve' runs them (each sequence's logits exactly as alone); measures their cost at --batch N" };
        var contend = new Option<int>("--contend") { Description = "Run N busy processes beside the measurement (a shared machine); the memory probe runs before them", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var plot = new Option<string?>("--plot") { Description = "Also write a PNG: ms/token and decoding state against context, every model in one figure" };
        var profile = new Option<bool>("--profile")
        {
            Description = "Also time each part of the timed steps (embedding, norms, each projection, the token mixer, SwiGLU, residual adds, " +
                          "the head): ms per step per part, as a second table (--json: results[].profile)",
        };
        var beyond = new Option<bool>("--beyond-context")
        {
            Description = "Time models with softmax layers past their max_position_embeddings too (speed only: what such a model computes there is meaningless)",
        };
        var command = new Command("decode",
            "Per context length: time greedy single-token decoding after that many tokens. Reports ms/token, tokens/s, the bytes of decoding state, the bytes a step reads (weights + state) and the GB/s that makes, as a fraction of this machine's read bandwidth, and against the floor measured on the model's own pages (a plain read of its matrices, alternated with steps).");
        command.Add(models);
        command.Add(tokenizer);
        engineOptions.AddTo(command);
        command.Add(contexts);
        command.Add(newTokens);
        command.Add(batch);
        command.Add(fill);
        command.Add(prefillChunk);
        command.Add(noBandwidth);
        command.Add(invariant);
        command.Add(contend);
        command.Add(json);
        command.Add(plot);
        command.Add(profile);
        command.Add(beyond);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var lengths = r.GetValue(contexts)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => int.TryParse(x, out int v) && v > 0 ? v : throw new LinearizeException($"--contexts: '{x}' is not a positive integer")).ToArray();
            int n = r.GetValue(newTokens), chunk = r.GetValue(prefillChunk), batchSize = r.GetValue(batch);
            if (n < 1 || chunk < 1 || batchSize < 1)
                throw new LinearizeException("--new-tokens, --prefill-chunk and --batch must be at least 1");
            // The context rule, checked for every model before anything is measured.
            foreach (string path in r.GetValue(models)!)
                CheckContexts(ModelSource.Resolve(path, r.GetValue(tokenizer)).LoadConfig(), path, lengths.Max(), n, r.GetValue(beyond));
            bool useEngine = engineOptions.UseEngine(r), synthetic = r.GetValue(fill) == "synthetic";
            if (!useEngine && (synthetic || batchSize > 1))
            {
                if (batchSize > 1)
                    throw new LinearizeException("--batch needs the decode engine (drop --engine torch)");
                synthetic = false; // the TorchSharp path has no synthetic fill: it prefills
            }

            var engineConfig = useEngine ? engineOptions.Parse(r) with { BatchInvariant = r.GetValue(invariant) } : null;
            int threads = engineConfig?.Threads ?? torch.get_num_threads();
            double? bandwidth = r.GetValue(noBandwidth) ? null : MemoryBandwidth.Measure(threads, 1L << 30, 3) / 1e9;
            var paths = r.GetValue(models)!;
            var benchmark = new DecodeBenchmarkOptions
            {
                Contexts = lengths, Steps = n, Batch = batchSize, SyntheticFill = synthetic, PrefillChunk = chunk, Engine = engineConfig,
                ReadFloor = useEngine && !r.GetValue(noBandwidth), Profile = r.GetValue(profile),
            };
            using var contention = new Contention(r.GetValue(contend));
            IReadOnlyList<DecodeRun> runs = Array.Empty<DecodeRun>();
            ConsoleUi.WithProgress("decode", progress =>
            {
                runs = DecodeBenchmark.Run(paths.Select(path => (BenchModelOptions.Name(path), ModelSource.Resolve(path, r.GetValue(tokenizer)))).ToArray(),
                    benchmark, progress);
                return 0;
            });

            if (r.GetValue(plot) is string png)
            {
                var series = new List<Plots.Series>();
                foreach (var run in runs)
                {
                    var xs = run.Rows.Select(x => (double)x.Context).ToArray();
                    series.Add(new Plots.Series($"{run.Model}: ms per token", xs, run.Rows.Select(x => x.MsPerToken).ToArray()));
                    series.Add(new Plots.Series($"{run.Model}: state (MiB)", xs, run.Rows.Select(x => x.StateBytes / (double)(1 << 20)).ToArray(), RightAxis: true));
                }

                Plots.Line(png, $"decode ({(useEngine ? "engine, " + EngineOptions.FormatName(engineConfig!.Weights) : "torch")}, batch {batchSize}, {threads} threads)",
                    "context tokens", "ms per step", series, logX: true, rightYLabel: "decoding state per sequence (MiB)", zeroBased: true);
                Console.Error.WriteLine($"wrote {png}");
            }

            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    engine = useEngine ? "engine" : "torch",
                    threads,
                    batch = batchSize,
                    batch_invariant = engineConfig?.BatchInvariant ?? false,
                    contend = contention.Count,
                    fill = synthetic ? "synthetic" : "prefill",
                    new_tokens = n,
                    bandwidth_gb_per_s = bandwidth is double bw ? Math.Round(bw, 2) : (double?)null,
                    models = runs.Select(run => new
                    {
                        model = run.Path,
                        mixers = run.Mixers,
                        weight_dtype = run.WeightDType,
                        weight_bytes_per_step = run.WeightBytesPerStep,
                        peak_rss_bytes = run.PeakRssBytes,
                        results = run.Rows.Select(x => new
                        {
                            context = x.Context,
                            ms_per_token = Math.Round(x.MsPerToken, 3),
                            tokens_per_second = Math.Round(x.TokensPerSecond, 1),
                            state_bytes = x.StateBytes,
                            bytes_per_step = x.BytesPerStep,
                            gb_per_s = Math.Round(x.GbPerSecond, 4), // 4 places: a tiny model on a loaded machine reads well under 0.01 GB/s
                            fraction_of_bandwidth = bandwidth is double b ? Math.Round(x.GbPerSecond / b, 3) : (double?)null,
                            floor_ms_per_token = x.FloorMs is double f ? Math.Round(f, 3) : (double?)null,
                            paired_ms_per_token = x.PairedMs is double pm ? Math.Round(pm, 3) : (double?)null,
                            fraction_of_floor = x.FloorMs is double f2 && x.PairedMs is double p2 ? Math.Round(f2 / p2, 3) : (double?)null,
                            profile = x.Profile?.ToDictionary(part => JsonName(part.Region), part => Math.Round(part.MsPerStep, 4)),
                        }),
                    }),
                }));
                return 0;
            }

            var table = new Table()
                .Title(Markup.Escape($"{(useEngine ? "engine" : "torch")}, batch {batchSize}{(engineConfig?.BatchInvariant == true ? " (batch-invariant)" : "")}, {threads} threads" +
                                     (contention.Count > 0 ? $", beside {contention.Count} busy processes" : "") +
                                     (bandwidth is double bwt ? $", read bandwidth {bwt:F1} GB/s" : "")))
                .AddColumn("model").AddColumn(new TableColumn("context").RightAligned()).AddColumn(new TableColumn("ms/step").RightAligned())
                .AddColumn(new TableColumn("tok/s").RightAligned()).AddColumn(new TableColumn("state/seq").RightAligned())
                .AddColumn(new TableColumn("read/step").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned());
            if (bandwidth is not null)
                table.AddColumn(new TableColumn("of bw").RightAligned());
            bool floors = runs.Any(run => run.Rows.Any(x => x.FloorMs is not null));
            if (floors)
                table.AddColumn(new TableColumn("of floor").RightAligned());
            foreach (var run in runs)
                foreach (var x in run.Rows)
                {
                    var cells = new List<string>
                    {
                        Markup.Escape(run.Model), x.Context.ToString("N0"), x.MsPerToken.ToString("F2"), x.TokensPerSecond.ToString("F1"),
                        Short(x.StateBytes), Short(x.BytesPerStep), x.GbPerSecond.ToString("F1"),
                    };
                    if (bandwidth is double b)
                        cells.Add($"{100 * x.GbPerSecond / b:F0}%");
                    if (floors)
                        cells.Add(x.FloorMs is double f && x.PairedMs is double p ? $"{100 * f / p:F0}%" : "");
                    table.AddRow(cells.ToArray());
                }

            ConsoleUi.Out.Write(table);
            foreach (var run in runs)
                ConsoleUi.Out.MarkupLine(Markup.Escape($"{run.Model}: {run.Mixers}; {run.WeightDType} weights, {ConsoleUi.Bytes(run.WeightBytesPerStep)} read per step, peak RSS {ConsoleUi.Bytes(run.PeakRssBytes)}"));
            if (r.GetValue(profile))
                ConsoleUi.Out.Write(ProfileTable(runs));
            return 0;
        }));
        return command;
    }

    /// <summary>ms per step in each part of a step (rows), per model and context (columns), with each part's share.</summary>
    private static Table ProfileTable(IReadOnlyList<DecodeRun> runs)
    {
        var columns = runs.SelectMany(run => run.Rows.Where(x => x.Profile is not null).Select(x => (run.Model, Row: x))).ToArray();
        var table = new Table().Title("ms per step, by part (timed on the calling thread; a parallel part counts its whole span)").AddColumn("part");
        foreach (var (model, row) in columns)
            table.AddColumn(new TableColumn(Markup.Escape($"{model} @{row.Context:N0}")).RightAligned());
        foreach (var region in Enum.GetValues<StepRegion>())
            table.AddRow(new[] { JsonName(region).Replace('_', ' ') }.Concat(columns.Select(c =>
            {
                double ms = c.Row.Profile!.Single(p => p.Region == region).MsPerStep, total = c.Row.Profile!.Sum(p => p.MsPerStep);
                return $"{ms:F3} ({(total > 0 ? 100 * ms / total : 0):F0}%)";
            })).ToArray());
        table.AddRow(new[] { "sum of parts" }.Concat(columns.Select(c => c.Row.Profile!.Sum(p => p.MsPerStep).ToString("F3"))).ToArray());
        return table;
    }

    /// <summary>A step part's key in --json and its label in the table: the enum name in snake case.</summary>
    private static string JsonName(StepRegion region) => region switch
    {
        StepRegion.QkvProjection => "qkv_projection",
        StepRegion.OutputProjection => "output_projection",
        StepRegion.GateUpProjection => "gate_up_projection",
        StepRegion.DownProjection => "down_projection",
        StepRegion.SwiGlu => "swiglu",
        _ => region.ToString().ToLowerInvariant(),
    };

    /// <summary>Bytes in at most 7 characters, so the decode table fits 80 columns.</summary>
    private static string Short(long bytes) => bytes >= 100L << 20 ? $"{bytes / (double)(1 << 20):F0} MiB" : ConsoleUi.Bytes(bytes);

    private const int WarmUpSteps = DecodeBenchmark.WarmUpSteps;

    /// <summary>The one context rule for a benchmark: a model with softmax layers is not run past its positions unless
    /// <c>--beyond-context</c> says its speed there is wanted; a linear model may, with the usual note.</summary>
    private static void CheckContexts(LlamaConfig config, string path, int context, int steps, bool beyond)
    {
        long positions = (long)context + WarmUpSteps + steps;
        int limit = config.MaxPositionEmbeddings;
        if (positions <= limit || !MixerFactory.HasGrowingCache(config))
        {
            ContextLimit.Check(config, positions, $"--contexts {context} + {WarmUpSteps + steps} steps");
            return;
        }

        if (!beyond)
            throw new LinearizeException($"--contexts {context} + {WarmUpSteps + steps} steps = {positions} exceeds the context of {limit} positions of {path} " +
                                         "(it has softmax attention layers); give smaller --contexts, or --beyond-context to time it anyway");
        Console.Error.WriteLine($"note: {path} runs {positions} positions, past its {limit} (--beyond-context): timings only, its outputs there mean nothing");
    }

    private static Command CreateThroughput()
    {
        var model = new ModelOptions();
        var engineOptions = new EngineCliOptions();
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length for the prefill measurement", DefaultValueFactory = _ => 256 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens decoded one at a time after the prompt", DefaultValueFactory = _ => 64 };
        var repeat = new Option<int>("--repeat") { Description = "Measured repetitions (after one warm-up); the median is reported", DefaultValueFactory = _ => 3 };
        var threads = new Option<int?>("--torch-threads") { Description = "libtorch intra-op threads for prefill (default: libtorch's choice)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("throughput", "Prefill tokens/s (one TorchSharp forward pass over the prompt) and decode tokens/s (single-token steps on the decode engine after the cache hand-over; --engine torch: TorchSharp steps), on random token ids.");
        model.AddTo(command);
        engineOptions.AddTo(command);
        command.Add(promptTokens);
        command.Add(newTokens);
        command.Add(repeat);
        command.Add(threads);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            int p = r.GetValue(promptTokens), n = r.GetValue(newTokens), reps = r.GetValue(repeat);
            if (p < 1 || n < 1 || reps < 1)
                throw new LinearizeException("--prompt-tokens, --new-tokens and --repeat must be at least 1");
            if (r.GetValue(threads) is int t)
                torch.set_num_threads(t);
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            using var llama = ModelLoader.Load(source, model.ParseDType(r));
            using var engine = engineOptions.Create(r, llama);
            if (engine is not null)
                DecodeBenchmark.WarmUp(engine);
            using var generator = new torch.Generator(0);
            var ids = torch.randint(0, llama.Config.VocabSize, new long[] { 1, p }, dtype: ScalarType.Int64, generator: generator);

            var prefill = new List<double>();
            var decode = new List<double>();
            for (int i = 0; i <= reps; i++)
            {
                using var noGrad = no_grad();
                using var cache = llama.CreateCache();
                var watch = Stopwatch.StartNew();
                using (var scope = NewDisposeScope())
                    llama.Forward(ids, cache);
                double prefillSeconds = watch.Elapsed.TotalSeconds;
                double decodeSeconds;
                if (engine is null)
                {
                    decodeSeconds = DecodeBenchmark.TimeGreedyDecode(llama, cache, n);
                }
                else
                {
                    using var seq = engine.Import(cache); // the hand-over is part of the first step's cost
                    int token = 1;
                    var decodeWatch = Stopwatch.StartNew();
                    for (int s = 0; s < n; s++)
                        token = Sampler.ArgMax(engine.Step(seq, token));
                    decodeSeconds = decodeWatch.Elapsed.TotalSeconds;
                }
                if (i == 0)
                    continue; // warm-up
                prefill.Add(p / prefillSeconds);
                decode.Add(n / decodeSeconds);
            }

            double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
            var result = new
            {
                model = r.GetValue(model.Model),
                parameters = llama.ParameterCount(),
                dtype = llama.DType.ToString().ToLowerInvariant(),
                decode = engine is null ? "torch" : $"engine ({engine.Describe()})",
                threads = engine?.Options.Threads ?? torch.get_num_threads(),
                prompt_tokens = p,
                new_tokens = n,
                prefill_tokens_per_second = Math.Round(Median(prefill), 1),
                decode_tokens_per_second = Math.Round(Median(decode), 1),
                decode_ms_per_token = Math.Round(1000 / Median(decode), 3),
            };
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(result));
                return 0;
            }

            // The model path is the title, so the row fits an 80-column terminal without wrapping.
            var table = new Table().Title(Markup.Escape(result.model!)).AddColumn("params").AddColumn("dtype").AddColumn("threads")
                .AddColumn(new TableColumn("prefill tok/s").RightAligned()).AddColumn(new TableColumn("decode tok/s").RightAligned())
                .AddColumn(new TableColumn("ms/token").RightAligned());
            table.AddRow($"{result.parameters:N0}", result.dtype, result.threads.ToString(),
                $"{result.prefill_tokens_per_second:F0} (T={p})", $"{result.decode_tokens_per_second:F1}", $"{result.decode_ms_per_token:F2}");
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }
}
