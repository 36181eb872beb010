using System.Net;
using Linearize.Serving.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Linearize.Serving;

/// <summary>
/// An OpenAI-compatible HTTP server (ASP.NET Core minimal APIs on Kestrel) in front of a <see cref="BatchScheduler"/>.
/// Logs nothing to the console (the CLI owns presentation). Start it, read <see cref="BaseAddress"/>, dispose to stop.
/// </summary>
public sealed class LinearizeServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private LinearizeServer(WebApplication app, BatchScheduler scheduler, ServerMetrics metrics, Uri baseAddress)
    {
        _app = app;
        Scheduler = scheduler;
        Metrics = metrics;
        BaseAddress = baseAddress;
    }

    /// <summary>Where it listens, e.g. <c>http://127.0.0.1:8080/</c> (the real port when 0 was asked).</summary>
    public Uri BaseAddress { get; }

    public BatchScheduler Scheduler { get; }

    public ServerMetrics Metrics { get; }

    public static async Task<LinearizeServer> StartAsync(ServedModel model, ServerOptions options, CancellationToken cancel = default)
    {
        options.Validate();
        if (!IPAddress.TryParse(options.Host, out var address) && options.Host != "localhost")
            throw new LinearizeException($"--host: '{options.Host}' is not an IP address (or localhost)");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
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
        app.Use(async (ctx, next) =>
        {
            // Every answer carries x-request-id: the client's own (so its logs and ours meet) or a fresh one.
            ctx.Response.Headers[RequestIdHeader] = RequestId(ctx.Request.Headers[RequestIdHeader].ToString());
            await next(ctx);
            metrics.Requests.WithLabels(OpenAiEndpoints.Label(ctx), ctx.Response.StatusCode.ToString()).Inc();
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
        return new LinearizeServer(app, scheduler, metrics, uri);
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

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        Scheduler.Dispose();
        await _app.DisposeAsync();
    }
}
