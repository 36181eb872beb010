using System.CommandLine;
using System.Runtime.InteropServices;
using Linearize.Serving;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize serve</c>: the OpenAI-compatible HTTP server with continuous batching.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var loader = new ServedModelLoader();
        var host = new Option<string>("--host") { Description = "Address to listen on (loopback by default; 0.0.0.0 exposes the server to the network)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8080 };
        var maxBatch = new Option<int>("--max-batch") { Description = "Sequences decoded together in one step; more requests wait in the queue", DefaultValueFactory = _ => 8 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests allowed to wait for a slot; beyond that the server answers 429", DefaultValueFactory = _ => 64 };
        var prefillSlice = new Option<int>("--prefill-slice") { Description = "Prompt tokens prefilled between two decode steps of the running batch: a long prompt delays the others by one slice, never by its whole length", DefaultValueFactory = _ => new ServerOptions().PrefillSliceTokens };
        var maxPrompt = new Option<int?>("--max-prompt-tokens") { Description = $"Longest prompt accepted (default: the context of a model with softmax layers, {ServerOptions.LinearModelPromptTokens} for a fully linear one)" };
        var shutdownTimeout = new Option<double>("--shutdown-timeout") { Description = "Seconds that SIGTERM or Ctrl-C lets requests in flight finish (new ones get 503, /health says draining); then the rest end with finish_reason length", DefaultValueFactory = _ => new ServerOptions().ShutdownTimeout.TotalSeconds };
        var modelId = new Option<string?>("--model-id") { Description = "Name reported in /v1/models and responses (default: the model's file or directory name)" };
        var command = new Command("serve",
            "Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions with streaming, /health, /metrics). " +
            "Concurrent requests share one decode batch (continuous batching); each gets the tokens it would get alone. " +
            "SIGTERM or Ctrl-C drains it (see --shutdown-timeout) and exits 0; a second one cuts the drain short.");
        loader.AddTo(command);
        command.Add(host);
        command.Add(port);
        command.Add(maxBatch);
        command.Add(maxQueue);
        command.Add(prefillSlice);
        command.Add(maxPrompt);
        command.Add(shutdownTimeout);
        command.Add(modelId);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!,
                Port = r.GetValue(port),
                MaxBatch = r.GetValue(maxBatch),
                MaxQueue = r.GetValue(maxQueue),
                PrefillSliceTokens = r.GetValue(prefillSlice),
                MaxPromptTokens = r.GetValue(maxPrompt),
                ShutdownTimeout = Seconds(r.GetValue(shutdownTimeout)),
            };
            options.Validate();
            var served = loader.Load(r, r.GetValue(modelId));
            using var _e = served.Engine;
            // The first SIGTERM or SIGINT starts the drain, a second one ends its grace period. Handled here rather
            // than by the ASP.NET Core host, which would only raise an event nobody waits on (see NoSignalHostLifetime).
            using var stop = new CancellationTokenSource();
            using var hurry = new CancellationTokenSource();
            void OnSignal(PosixSignalContext context)
            {
                context.Cancel = true;
                if (stop.IsCancellationRequested)
                    hurry.Cancel();
                else
                    stop.Cancel();
            }

            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            var server = LinearizeServer.StartAsync(served, options).GetAwaiter().GetResult();
            var o = Console.Error;
            o.WriteLine($"serving '{served.Id}' at {server.BaseAddress}v1 — {served.Engine.Describe()}, batches of up to {options.MaxBatch}, queue {options.MaxQueue}");
            o.WriteLine($"chat format: {served.Template.Source}; context: {(served.ContextLimit is int l ? $"{l} positions (softmax layers)" : "no hard limit (every layer keeps a fixed-size state)")}");
            o.WriteLine($"try: curl {server.BaseAddress}v1/completions -H 'Content-Type: application/json' -d '{{\"prompt\": \"Once upon a time\", \"max_tokens\": 32, \"temperature\": 0}}'");
            o.WriteLine($"Ctrl-C or SIGTERM stops the server (requests in flight get up to {options.ShutdownTimeout.TotalSeconds:0.#} s to finish).");
            server.WaitAsync(stop.Token).GetAwaiter().GetResult();
            o.WriteLine($"draining: {Requests(server.InFlightRequests)} in flight, new ones get 503 (up to {options.ShutdownTimeout.TotalSeconds:0.#} s; a second Ctrl-C or SIGTERM ends them now)");
            int cut = server.ShutdownAsync(options.ShutdownTimeout, hurry.Token).GetAwaiter().GetResult();
            o.WriteLine(cut == 0 ? "stopped: every request finished" : $"stopped: {Requests(cut)} ended early with finish_reason length");
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return 0;
        }));
        return command;
    }

    private static string Requests(int n) => n == 1 ? "1 request" : $"{n} requests";

    private static TimeSpan Seconds(double seconds) =>
        double.IsFinite(seconds) && seconds is >= 0 and <= 86400
            ? TimeSpan.FromSeconds(seconds)
            : throw new LinearizeException($"--shutdown-timeout must be in [0, 86400] seconds, got {seconds}");
}
