using System.Net;
using Linearize.Serving.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Linearize.Serving;

/// <summary>
/// An OpenAI-compatible HTTP server (ASP.NET Core minimal APIs on Kestrel) in front of a <see cref="BatchScheduler"/>.
/// Logs nothing to the console and handles no process signals (the CLI owns both). Start it, read
/// <see cref="BaseAddress"/>; <see cref="ShutdownAsync"/> drains it like a service, dispose to stop.
/// </summary>
public sealed class LinearizeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Gate _gate;
    private int _stopped;

    /// <summary>Counts the generation requests being answered and refuses new ones once draining starts. A request
    /// counts itself before it reads the flag, so a drain that sees zero can never miss one that got through.</summary>
    private sealed class Gate
    {
        private int _inFlight;
        private int _draining;

        public int InFlight => Volatile.Read(ref _inFlight);

        public bool Draining => Volatile.Read(ref _draining) != 0;

        public bool TryEnter()
        {
            Interlocked.Increment(ref _inFlight);
            if (Volatile.Read(ref _draining) == 0)
                return true;
            Interlocked.Decrement(ref _inFlight);
            return false;
        }

        public void Exit() => Interlocked.Decrement(ref _inFlight);

        public void StartDraining() => Interlocked.Exchange(ref _draining, 1);
    }

    private LinearizeServer(WebApplication app, BatchScheduler scheduler, ServerMetrics metrics, Uri baseAddress, Gate gate)
    {
        _app = app;
        Scheduler = scheduler;
        Metrics = metrics;
        BaseAddress = baseAddress;
        _gate = gate;
    }

    /// <summary>Where it listens, e.g. <c>http://127.0.0.1:8080/</c> (the real port when 0 was asked).</summary>
    public Uri BaseAddress { get; }

    public BatchScheduler Scheduler { get; }

    public ServerMetrics Metrics { get; }

    /// <summary>True once <see cref="ShutdownAsync"/> has started: new generation requests get a 503 and
    /// <c>/health</c> answers 503 with status <c>draining</c>, so a load balancer takes the server out of rotation.</summary>
    public bool Draining => _gate.Draining;

    /// <summary>Generation requests whose response is still being written.</summary>
    public int InFlightRequests => _gate.InFlight;

    public static async Task<LinearizeServer> StartAsync(ServedModel model, ServerOptions options, CancellationToken cancel = default)
    {
        options.Validate();
        if (!IPAddress.TryParse(options.Host, out var address) && options.Host != "localhost")
            throw new LinearizeException($"--host: '{options.Host}' is not an IP address (or localhost)");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IHostLifetime, NoSignalHostLifetime>();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            if (address is null)
                k.ListenLocalhost(options.Port);
            else
                k.Listen(address, options.Port);
        });
        var app = builder.Build();
        var metrics = new ServerMetrics();
        var scheduler = new BatchScheduler(model, options, metrics);
        var api = new OpenAiEndpoints(model, options, scheduler, metrics);
        var gate = new Gate();
        app.Use(async (ctx, next) =>
        {
            // Every answer carries x-request-id: the client's own (so its logs and ours meet) or a fresh one.
            ctx.Response.Headers[RequestIdHeader] = RequestId(ctx.Request.Headers[RequestIdHeader].ToString());
            await next(ctx);
            metrics.Requests.WithLabels(OpenAiEndpoints.Label(ctx), ctx.Response.StatusCode.ToString()).Inc();
        });
        app.Use(async (ctx, next) =>
        {
            string path = ctx.Request.Path.Value ?? "";
            if (path == "/health" && gate.Draining)
            {
                ctx.Response.StatusCode = (int)HttpStatusCode.ServiceUnavailable;
                await ctx.Response.WriteAsJsonAsync(new System.Text.Json.Nodes.JsonObject
                {
                    ["status"] = "draining",
                    ["model"] = model.Id,
                    ["active_sequences"] = scheduler.ActiveSequences,
                    ["queue_depth"] = scheduler.QueueDepth,
                });
                return;
            }

            if (path is not ("/v1/completions" or "/v1/chat/completions"))
            {
                await next(ctx);
                return;
            }

            if (!gate.TryEnter())
            {
                ctx.Response.Headers.Connection = "close";
                await api.WriteError(ctx, new ApiException(HttpStatusCode.ServiceUnavailable,
                    "the server is shutting down; send the request to another instance", type: "server_shutting_down"));
                return;
            }

            try
            {
                await next(ctx);
            }
            finally
            {
                gate.Exit();
            }
        });
        app.MapGet("/v1/models", api.Models);
        app.MapGet("/v1/models/{**id}", (HttpContext ctx, string id) => api.Model(ctx, id));
        app.MapPost("/v1/completions", api.Completions);
        app.MapPost("/v1/chat/completions", api.ChatCompletions);
        app.MapGet("/health", api.Health);
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapFallback(ctx => api.WriteError(ctx, new ApiException(HttpStatusCode.NotFound,
            $"no route {ctx.Request.Method} {ctx.Request.Path}; this server has GET /v1/models, GET /v1/models/{{id}}, POST /v1/completions, POST /v1/chat/completions, GET /health, GET /metrics",
            type: "not_found")));
        try
        {
            await app.StartAsync(cancel);
        }
        catch (IOException e)
        {
            scheduler.Dispose();
            await app.DisposeAsync();
            throw new LinearizeException($"cannot listen on {options.Host}:{options.Port}: {e.Message}");
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var uri = new Uri(addresses.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/') + "/");
        return new LinearizeServer(app, scheduler, metrics, uri, gate);
    }

    public const string RequestIdHeader = "x-request-id";

    /// <summary>The client's request id when it is a sane header value (printable ASCII, at most 128 characters — it is
    /// echoed, so nothing that could split or bloat a header line), otherwise a new one.</summary>
    public static string RequestId(string? fromClient) =>
        !string.IsNullOrEmpty(fromClient) && fromClient.Length <= 128 && fromClient.All(c => c is >= '!' and <= '~')
            ? fromClient
            : "req-" + Guid.NewGuid().ToString("N");

    /// <summary>Runs until <paramref name="cancel"/> fires.</summary>
    public Task WaitAsync(CancellationToken cancel) => Task.Delay(Timeout.Infinite, cancel).ContinueWith(_ => { }, TaskScheduler.Default);

    /// <summary>
    /// Stops like a service: refuses new generation requests (503) while <c>/health</c> says <c>draining</c>, lets the
    /// requests in flight finish for up to <paramref name="grace"/> (or until <paramref name="hurry"/> fires), then
    /// ends the rest with finish reason <c>length</c> — their streams still close with a final chunk and
    /// <c>[DONE]</c> — and stops listening. Returns the number of requests that were cut short.
    /// </summary>
    public async Task<int> ShutdownAsync(TimeSpan grace, CancellationToken hurry = default)
    {
        _gate.StartDraining();
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(hurry))
        {
            wait.CancelAfter(grace);
            await WhenIdle(wait.Token);
        }

        int cut = _gate.InFlight;
        if (cut > 0)
        {
            // "length" because the reply stopped before its natural end, as with max_tokens; OpenAI's clients reject
            // finish reasons outside their enumeration.
            Scheduler.FinishAll("length");
            using var flush = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await WhenIdle(flush.Token);
        }

        await StopListening();
        return cut;
    }

    /// <summary>Polls rather than signals: shutdown happens once, and a few milliseconds of latency cost nothing there.</summary>
    private async Task WhenIdle(CancellationToken cancel)
    {
        try
        {
            while (_gate.InFlight > 0)
                await Task.Delay(20, cancel);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task StopListening()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
            await _app.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await StopListening();
        Scheduler.Dispose();
        await _app.DisposeAsync();
    }
}
