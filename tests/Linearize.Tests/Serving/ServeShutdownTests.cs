using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Serving;

/// <summary>
/// <c>linearize serve</c> stops like a service: on SIGTERM it refuses new requests (503) while <c>/health</c> says
/// draining, lets a stream in flight finish, ends one that outlasts <c>--shutdown-timeout</c> with a final chunk and
/// <c>[DONE]</c>, and exits 0. It runs as a child process, because the signal goes to a whole process.
/// </summary>
[Collection("Torch")]
public sealed partial class ServeShutdownTests
{
    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    private const int SigTerm = 15;

    [Fact]
    public async Task SigtermDrainsFinishesOrCutsTheStreamsAndExitsZero()
    {
        using var dir = new TempDir();
        // A fully linear model has no context limit, so a stream asked for a million tokens outlasts any grace period.
        string model = dir.File("gla");
        var (code, _, err) = CliHarness.Run("convert", "--model", SampleData.Stories260KDir, "--method", "liger-gla", "--out", model);
        Assert.True(code == 0, err);

        const double grace = 6;
        using var server = ServeProcess.Start(model, grace);
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var endless = await Streaming.Open(http, maxTokens: 1_000_000);
        var shortOne = await Streaming.Open(http, maxTokens: 16);

        Assert.Equal(0, kill(server.Process.Id, SigTerm));
        var signalled = Stopwatch.StartNew();

        // Inside the grace period the endless stream keeps the server draining: health says so (once the signal has
        // been delivered: that is asynchronous), new work is refused.
        var health = await http.GetAsync("/health");
        while (health.StatusCode == HttpStatusCode.OK && signalled.Elapsed < TimeSpan.FromSeconds(grace / 2))
        {
            await Task.Delay(20);
            health = await http.GetAsync("/health");
        }

        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Equal("draining", (string?)(await health.Content.ReadFromJsonAsync<JsonObject>())!["status"]);
        var refused = await http.PostAsJsonAsync("/v1/completions", new JsonObject { ["prompt"] = "Once", ["max_tokens"] = 4 });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);

        var (shortReason, shortTokens) = await shortOne.ReadToEnd();
        Assert.True(shortReason == "stop" || shortTokens == 16, $"the short stream was cut: {shortReason} after {shortTokens} tokens");
        var (endlessReason, endlessTokens) = await endless.ReadToEnd();
        double ended = signalled.Elapsed.TotalSeconds;
        Assert.Equal("length", endlessReason);
        Assert.InRange(endlessTokens, 1, 999_999);
        Assert.True(ended >= grace - 0.5, $"the endless stream ended {ended:F1} s after SIGTERM, before the {grace} s grace period");

        Assert.True(server.Process.WaitForExit(TimeSpan.FromSeconds(grace + 15)), "the server did not exit after SIGTERM\n" + server.Stderr);
        server.Process.WaitForExit(); // the untimed wait also drains the redirected stderr
        Assert.True(server.Process.ExitCode == 0, $"exit {server.Process.ExitCode}\n{server.Stderr}");
        Assert.Contains("stopped: 1 request ended early with finish_reason length", server.Stderr);
    }

    /// <summary>An SSE stream whose first chunk has arrived (so it is in flight), read line by line.</summary>
    private sealed class Streaming(HttpResponseMessage response, StreamReader reader)
    {
        public static async Task<Streaming> Open(HttpClient http, int maxTokens)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = JsonContent.Create(new JsonObject
                {
                    ["prompt"] = "Once upon a time", ["max_tokens"] = maxTokens, ["temperature"] = 0, ["stream"] = true,
                    ["stream_options"] = new JsonObject { ["include_usage"] = true },
                }),
            };
            var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var s = new Streaming(response, reader);
            s._first = await reader.ReadLineAsync();
            Assert.StartsWith("data: {", s._first);
            return s;
        }

        private string? _first;

        /// <summary>Reads to <c>[DONE]</c>, which must be the last event; returns the finish reason and the usage count.</summary>
        public async Task<(string? Reason, int Tokens)> ReadToEnd()
        {
            using var _ = response;
            string? reason = null, last = null;
            int tokens = -1;
            for (string? line = _first; line is not null; line = await reader.ReadLineAsync())
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    continue;
                last = line["data: ".Length..];
                if (last == "[DONE]")
                    continue;
                var chunk = JsonNode.Parse(last)!;
                Assert.Null(chunk["error"]);
                if (chunk["choices"]!.AsArray() is [var choice, ..] && (string?)choice!["finish_reason"] is string r)
                    reason = r;
                if (chunk["usage"] is JsonNode usage)
                    tokens = (int)usage["completion_tokens"]!;
            }

            Assert.Equal("[DONE]", last);
            return (reason, tokens);
        }
    }

    /// <summary><c>linearize serve</c> in a child process on a free port, its stderr collected.</summary>
    private sealed partial class ServeProcess : IDisposable
    {
        private readonly ConcurrentQueue<string> _stderr = new();

        private ServeProcess(Process process) => Process = process;

        public Process Process { get; }

        public Uri BaseAddress { get; private set; } = null!;

        public string Stderr => string.Join("\n", _stderr);

        [GeneratedRegex(@"serving '.*' at (http://\S+/)v1")]
        private static partial Regex Serving();

        public static ServeProcess Start(string model, double shutdownTimeout)
        {
            var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            {
                RedirectStandardError = true, RedirectStandardOutput = true,
            };
            info.ArgumentList.Add(typeof(Linearize.Cli.Program).Assembly.Location);
            foreach (var a in new[] { "serve", "--model", model, "--port", "0", "--max-batch", "4", "--shutdown-timeout", $"{shutdownTimeout}" })
                info.ArgumentList.Add(a);
            var started = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
            var p = new ServeProcess(Process.Start(info)!);
            p.Process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null)
                {
                    started.TrySetException(new InvalidOperationException("serve exited before listening:\n" + p.Stderr));
                    return;
                }

                p._stderr.Enqueue(e.Data);
                if (Serving().Match(e.Data) is { Success: true } m)
                    started.TrySetResult(new Uri(m.Groups[1].Value));
            };
            p.Process.OutputDataReceived += (_, _) => { };
            p.Process.BeginErrorReadLine();
            p.Process.BeginOutputReadLine();
            if (!started.Task.Wait(TimeSpan.FromSeconds(120)))
            {
                p.Dispose();
                throw new TimeoutException("serve did not start listening within 120 s:\n" + p.Stderr);
            }

            p.BaseAddress = started.Task.Result;
            return p;
        }

        public void Dispose()
        {
            if (!Process.HasExited)
                Process.Kill();
            Process.Dispose();
        }
    }
}
