using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Linearize.Modeling;
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
        return command;
    }

    private static Command CreateDecode()
    {
        var model = new ModelOptions();
        var contexts = new Option<string>("--contexts") { Description = "Comma-separated context lengths", DefaultValueFactory = _ => "256,1024,4096,16384" };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens decoded (and timed) after each context", DefaultValueFactory = _ => 16 };
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "Context tokens per prefill forward pass", DefaultValueFactory = _ => 512 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var plot = new Option<string?>("--plot") { Description = "Also write a PNG of ms/token and state size against context" };
        var command = new Command("decode",
            "Per context length: fill the decoding cache with that many random tokens, then time single-token decoding; reports ms per token and the bytes of decoding state (KV cache for softmax layers, recurrent state + window for linear layers).");
        model.AddTo(command);
        command.Add(contexts);
        command.Add(newTokens);
        command.Add(prefillChunk);
        command.Add(json);
        command.Add(plot);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var lengths = r.GetValue(contexts)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => int.TryParse(x, out int v) && v > 0 ? v : throw new LinearizeException($"--contexts: '{x}' is not a positive integer")).ToArray();
            int n = r.GetValue(newTokens), chunk = r.GetValue(prefillChunk);
            if (n < 1 || chunk < 1)
                throw new LinearizeException("--new-tokens and --prefill-chunk must be at least 1");
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            using var llama = ModelLoader.Load(source, model.ParseDType(r));
            var rows = new List<(int Context, double MsPerToken, long StateBytes, double PrefillSeconds)>();
            ConsoleUi.WithProgress("contexts", progress =>
            {
                foreach (int context in lengths)
                {
                    using var noGrad = no_grad();
                    using var cache = llama.CreateCache();
                    using var generator = new torch.Generator((ulong)context);
                    var watch = Stopwatch.StartNew();
                    for (int start = 0; start < context; start += chunk)
                    {
                        using var scope = NewDisposeScope();
                        int len = Math.Min(chunk, context - start);
                        llama.Forward(torch.randint(0, llama.Config.VocabSize, new long[] { 1, len }, dtype: ScalarType.Int64, generator: generator), cache);
                    }

                    double prefill = watch.Elapsed.TotalSeconds;
                    double decodeSeconds = TimeGreedyDecode(llama, cache, n);
                    rows.Add((context, 1000 * decodeSeconds / n, cache.StateBytes, prefill));
                    progress.Report((rows.Count, lengths.Length));
                }

                return 0;
            });

            var mixers = string.Join("; ", llama.Model.Layers.Select(l => l.SelfAttention.Describe()).GroupBy(x => x).Select(g => $"{g.Key} × {g.Count()}"));
            if (r.GetValue(plot) is string png)
                Plots.Line(png, $"decode: {Path.GetFileName(Path.TrimEndingDirectorySeparator(r.GetValue(model.Model)!))}", "context tokens", "ms per generated token",
                    new[]
                    {
                        new Plots.Series("ms per token", rows.Select(x => (double)x.Context).ToArray(), rows.Select(x => x.MsPerToken).ToArray()),
                        new Plots.Series("decoding state (MiB)", rows.Select(x => (double)x.Context).ToArray(), rows.Select(x => x.StateBytes / (double)(1 << 20)).ToArray(), RightAxis: true),
                    }, logX: true, rightYLabel: "decoding state (MiB)", zeroBased: true);
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = r.GetValue(model.Model),
                    mixers,
                    threads = torch.get_num_threads(),
                    new_tokens = n,
                    results = rows.Select(x => new { context = x.Context, ms_per_token = Math.Round(x.MsPerToken, 3), state_bytes = x.StateBytes, prefill_seconds = Math.Round(x.PrefillSeconds, 2) }),
                }));
                return 0;
            }

            var table = new Table().Title(Markup.Escape(mixers)).AddColumn(new TableColumn("context").RightAligned())
                .AddColumn(new TableColumn("ms/token").RightAligned()).AddColumn(new TableColumn("state").RightAligned())
                .AddColumn(new TableColumn("state bytes").RightAligned()).AddColumn(new TableColumn("prefill s").RightAligned());
            foreach (var x in rows)
                table.AddRow(x.Context.ToString(), x.MsPerToken.ToString("F2"), ConsoleUi.Bytes(x.StateBytes), x.StateBytes.ToString("N0"), x.PrefillSeconds.ToString("F1"));
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }

    /// <summary>Seconds for <paramref name="steps"/> single-token greedy steps after whatever <paramref name="cache"/> holds.</summary>
    private static double TimeGreedyDecode(Linearize.Modeling.Llama.LlamaForCausalLM llama, Linearize.Caching.ModelCache cache, int steps)
    {
        var next = torch.tensor(new long[] { 1 }).view(1, 1);
        var watch = Stopwatch.StartNew();
        for (int s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var logits = llama.Forward(next, cache);
            next.Dispose();
            next = logits[0, -1].argmax().view(1, 1).DetachFromDisposeScope();
        }

        next.Dispose();
        return watch.Elapsed.TotalSeconds;
    }

    private static Command CreateThroughput()
    {
        var model = new ModelOptions();
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length for the prefill measurement", DefaultValueFactory = _ => 256 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens decoded one at a time after the prompt", DefaultValueFactory = _ => 64 };
        var repeat = new Option<int>("--repeat") { Description = "Measured repetitions (after one warm-up); the median is reported", DefaultValueFactory = _ => 3 };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads (default: libtorch's choice)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("throughput", "Prefill tokens/s (one forward pass over the prompt) and decode tokens/s (single-token steps with the cache), on random token ids.");
        model.AddTo(command);
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
                double decodeSeconds = TimeGreedyDecode(llama, cache, n);
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
                threads = torch.get_num_threads(),
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
