using System.CommandLine;
using System.Text.Json;
using Linearize.Serving;
using Linearize.Serving.LoadTest;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize bench serve</c>: the server under concurrent streaming clients, per batch size and model.</summary>
public static class BenchServeCommand
{
    public static Command Create()
    {
        var loader = new ServedModelLoader();
        var vs = new Option<string[]>("--vs") { Description = "More models to run the same load on (e.g. the teacher and its conversion), in one table", AllowMultipleArgumentsPerToken = true };
        var clients = new Option<int>("--clients") { Description = "Concurrent streaming clients (distinct prompts)", DefaultValueFactory = _ => 32 };
        var batches = new Option<int[]>("--max-batch") { Description = "Batch sizes to run, e.g. --max-batch 1 8 32", DefaultValueFactory = _ => new[] { 1, 8, 32 }, AllowMultipleArgumentsPerToken = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "max_tokens of every request (greedy; a reply may stop earlier at EOS)", DefaultValueFactory = _ => 64 };
        var malformed = new Option<int>("--malformed") { Description = "Malformed requests fired after the load, before one last good request", DefaultValueFactory = _ => 1000 };
        var prefillSlice = new Option<int>("--prefill-slice") { Description = "Prompt tokens prefilled between two decode steps of the running batch", DefaultValueFactory = _ => new ServerOptions().PrefillSliceTokens };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Lengthen every prompt to at least N tokens with story sentences (long contexts: where a fixed-size state pays)", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("serve",
            "Load-test the OpenAI-compatible server on loopback: each prompt answered alone first (the reference), then all clients at once per --max-batch, streaming and greedy. " +
            "Reports requests/s, tokens/s, p50/p99 latency and state bytes per sequence, and checks that every answer equals its reference, none is lost and /health answers throughout; " +
            "then fires --malformed bad requests and checks the server still answers.");
        loader.AddTo(command);
        command.Add(vs);
        command.Add(clients);
        command.Add(batches);
        command.Add(maxTokens);
        command.Add(malformed);
        command.Add(prefillSlice);
        command.Add(promptTokens);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            int n = r.GetValue(clients), tokens = r.GetValue(maxTokens), bad = r.GetValue(malformed);
            var sizes = r.GetValue(batches)!;
            if (n < 1 || tokens < 1 || bad < 0 || sizes.Length == 0 || sizes.Any(b => b < 1))
                throw new LinearizeException("--clients, --max-tokens and every --max-batch must be at least 1, --malformed at least 0");
            var models = new[] { r.GetValue(loader.Model.Model)! }.Concat(r.GetValue(vs) ?? Array.Empty<string>()).ToArray();
            var rows = new List<LoadTestRow>();
            var sweeps = new List<(string Model, MalformedSweep Sweep)>();
            if (r.GetValue(promptTokens) < 0)
                throw new LinearizeException($"--prompt-tokens must be at least 0, got {r.GetValue(promptTokens)}");
            var err = Console.Error;
            foreach (var path in models)
            {
                var served = loader.Load(r, modelPath: path);
                using var _e = served.Engine;
                var prompts = r.GetValue(promptTokens) > 0
                    ? ServeLoadTest.LongPrompts(n, r.GetValue(promptTokens), served.Tokenizer)
                    : ServeLoadTest.DefaultPrompts(n);
                var test = new ServeLoadTest(served, prompts, tokens, new ServerOptions { PrefillSliceTokens = r.GetValue(prefillSlice) });
                err.WriteLine($"{served.Id}: {n} reference answers, one at a time…");
                var reference = test.ReferenceAsync(CancellationToken.None).GetAwaiter().GetResult();
                foreach (int b in sizes)
                {
                    err.WriteLine($"{served.Id}: {n} concurrent clients, --max-batch {b}…");
                    rows.Add(test.RunAsync(b, reference, CancellationToken.None).GetAwaiter().GetResult());
                }

                if (bad > 0)
                {
                    err.WriteLine($"{served.Id}: {bad} malformed requests…");
                    sweeps.Add((served.Id, test.MalformedAsync(bad, 8, reference[0], CancellationToken.None).GetAwaiter().GetResult()));
                }
            }

            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    clients = n,
                    max_tokens = tokens,
                    prefill_slice = r.GetValue(prefillSlice),
                    prompt_tokens = r.GetValue(promptTokens),
                    rows = rows.Select(x => new
                    {
                        model = x.Model, max_batch = x.MaxBatch, requests = x.Requests, seconds = Math.Round(x.Seconds, 3),
                        requests_per_second = Math.Round(x.RequestsPerSecond, 2), tokens_per_second = Math.Round(x.TokensPerSecond, 1),
                        latency_p50_ms = Math.Round(x.LatencyP50Ms, 1), latency_p99_ms = Math.Round(x.LatencyP99Ms, 1),
                        first_token_p50_ms = Math.Round(x.FirstTokenP50Ms, 1), state_bytes_per_sequence = x.StateBytesPerSequence,
                        prefill_seconds = Math.Round(x.PrefillSeconds, 3), decode_step_seconds = Math.Round(x.StepSeconds, 3), decode_steps = x.Steps,
                        mismatches = x.Mismatches, lost = x.Lost, health_checks = x.HealthChecks, health_failures = x.HealthFailures,
                    }),
                    malformed = sweeps.Select(s => new
                    {
                        model = s.Model, sent = s.Sweep.Sent, answered_4xx = s.Sweep.AnsweredWith4xx, other = s.Sweep.Other, serves_afterwards = s.Sweep.ServesAfterwards,
                    }),
                }));
            }
            else
            {
                var table = new Table().Title($"{n} concurrent streaming clients, greedy, max_tokens {tokens}{(r.GetValue(promptTokens) > 0 ? $", prompts ≥ {r.GetValue(promptTokens)} tokens" : "")}, prompts prefilled in slices of {r.GetValue(prefillSlice)} tokens")
                    .AddColumn("model").AddColumn(new TableColumn("batch").RightAligned()).AddColumn(new TableColumn("req/s").RightAligned())
                    .AddColumn(new TableColumn("tok/s").RightAligned()).AddColumn(new TableColumn("p50 ms").RightAligned())
                    .AddColumn(new TableColumn("p99 ms").RightAligned()).AddColumn(new TableColumn("1st tok p50").RightAligned())
                    .AddColumn(new TableColumn("prefill s").RightAligned()).AddColumn(new TableColumn("steps s").RightAligned())
                    .AddColumn(new TableColumn("state/seq").RightAligned()).AddColumn("= alone").AddColumn("lost").AddColumn("/health");
                foreach (var x in rows)
                    table.AddRow(Markup.Escape(x.Model), x.MaxBatch.ToString(), $"{x.RequestsPerSecond:F2}", $"{x.TokensPerSecond:F0}", $"{x.LatencyP50Ms:F0}",
                        $"{x.LatencyP99Ms:F0}", $"{x.FirstTokenP50Ms:F0}", $"{x.PrefillSeconds:F2}", $"{x.StepSeconds:F2} ({x.Steps})", $"{x.StateBytesPerSequence / 1024.0:F1} KiB",
                        $"{x.Requests - x.Mismatches - x.Lost}/{x.Requests}", x.Lost.ToString(), $"{x.HealthChecks - x.HealthFailures}/{x.HealthChecks}");
                ConsoleUi.Out.Write(table);
                foreach (var (m, s) in sweeps)
                    ConsoleUi.Out.WriteLine($"{m}: {s.Sent} malformed requests → {s.AnsweredWith4xx} answered 4xx, {s.Other} otherwise; " +
                                            $"a good request afterwards {(s.ServesAfterwards ? "equals its reference" : "FAILED")}");
            }

            bool healthy = rows.All(x => x.Mismatches == 0 && x.Lost == 0 && x.HealthFailures == 0) && sweeps.All(s => s.Sweep.Other == 0 && s.Sweep.ServesAfterwards);
            if (!healthy)
                err.WriteLine("error: the server broke a promise under load (see the table)");
            return healthy ? 0 : 1;
        }));
        return command;
    }
}
