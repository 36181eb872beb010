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
        return command;
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
                var next = torch.tensor(new long[] { 1 }).unsqueeze(0);
                watch.Restart();
                for (int s = 0; s < n; s++)
                {
                    using var scope = NewDisposeScope();
                    var logits = llama.Forward(next, cache);
                    next.Dispose();
                    next = logits[0, -1].argmax().view(1, 1).DetachFromDisposeScope();
                }

                double decodeSeconds = watch.Elapsed.TotalSeconds;
                next.Dispose();
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

            var table = new Table().AddColumn("model").AddColumn("params").AddColumn("threads")
                .AddColumn(new TableColumn("prefill tok/s").RightAligned()).AddColumn(new TableColumn("decode tok/s").RightAligned())
                .AddColumn(new TableColumn("ms/token").RightAligned());
            table.AddRow(Markup.Escape(result.model!), $"{result.parameters:N0}", result.threads.ToString(),
                $"{result.prefill_tokens_per_second:F0} (T={p})", $"{result.decode_tokens_per_second:F1}", $"{result.decode_ms_per_token:F2}");
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }
}
