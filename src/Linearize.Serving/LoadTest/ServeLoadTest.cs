using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Linearize.Serving.LoadTest;

/// <summary>
/// A bounded loopback load test of <see cref="LinearizeServer"/>: every prompt is first
/// answered alone (one request at a time — the reference), then for each batch size a fresh server takes all clients
/// at once, streaming, greedy; each answer must equal its reference, none may be lost, and <c>/health</c> is polled
/// throughout. Then a burst of malformed requests, after which the server must still answer correctly.
/// </summary>
public sealed class ServeLoadTest(ServedModel model, IReadOnlyList<string> prompts, int maxTokens, ServerOptions? options = null)
{
    private readonly ServerOptions _base = (options ?? new ServerOptions()) with { Port = 0, Host = "127.0.0.1" };

    /// <summary>Openings the default prompts are made from (TinyStories style, since the shared model tells stories).</summary>
    public static IReadOnlyList<string> DefaultPrompts(int count)
    {
        string[] who = { "a little girl named Lily", "a big brown dog", "a tiny bird", "a boy named Tom", "an old cat", "a red ball", "a kind frog", "a happy fish" };
        string[] what = { "found a shiny stone", "wanted to play outside", "was very sad", "saw a big tree", "went to the park", "made a new friend" };
        return Enumerable.Range(0, count).Select(i => $"Once upon a time, {who[i % who.Length]} {what[i / who.Length % what.Length]}.").ToArray();
    }

    /// <summary>Prompts of at least <paramref name="minTokens"/> tokens under <paramref name="tokenizer"/>: each default
    /// opening preceded by story sentences (a long shared context, as in a conversation's history). The linear
    /// model's state does not grow with it; the teacher's KV cache does.</summary>
    public static IReadOnlyList<string> LongPrompts(int count, int minTokens, Linearize.Tokenization.TextTokenizer tokenizer)
    {
        string[] sentences =
        {
            "The sun was warm and the grass was green.", "A little bird sang a happy song in the tall tree.",
            "Mom made a big cake for the party.", "The children ran to the park to play with the red ball.",
            "Tim had a small boat that he loved very much.", "One day it started to rain and everyone went inside.",
        };
        var openings = DefaultPrompts(count);
        return openings.Select((opening, i) =>
        {
            var text = new System.Text.StringBuilder();
            int k = i;
            while (tokenizer.Encode(text + " " + opening).Count < minTokens)
                text.Append(text.Length == 0 ? "" : " ").Append(sentences[k++ % sentences.Length]);
            return (text.Length == 0 ? "" : text + " ") + opening;
        }).ToArray();
    }

    /// <summary>The reference answers: each prompt alone on a server with one slot.</summary>
    public async Task<string[]> ReferenceAsync(CancellationToken cancel)
    {
        await using var server = await LinearizeServer.StartAsync(model, _base with { MaxBatch = 1, MaxQueue = 1 }, cancel);
        using var http = Client(server);
        var answers = new string[prompts.Count];
        for (int i = 0; i < prompts.Count; i++)
            answers[i] = (await StreamOne(http, prompts[i], cancel)).Text ?? throw new InvalidOperationException($"reference request {i} failed");
        return answers;
    }

    /// <summary>All prompts at once against a server batching up to <paramref name="maxBatch"/>.</summary>
    public async Task<LoadTestRow> RunAsync(int maxBatch, string[] reference, CancellationToken cancel)
    {
        await using var server = await LinearizeServer.StartAsync(model, _base with { MaxBatch = maxBatch, MaxQueue = prompts.Count }, cancel);
        using var http = Client(server);
        using var stopHealth = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        int checks = 0, failures = 0;
        var health = Task.Run(async () =>
        {
            using var h = Client(server);
            while (!stopHealth.IsCancellationRequested)
            {
                try
                {
                    using var r = await h.GetAsync("health", stopHealth.Token);
                    if (r.StatusCode != HttpStatusCode.OK)
                        failures++;
                    checks++;
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (HttpRequestException)
                {
                    failures++;
                    checks++;
                }

                await Task.Delay(50, CancellationToken.None);
            }
        }, CancellationToken.None);

        var watch = Stopwatch.StartNew();
        var results = await Task.WhenAll(prompts.Select(p => StreamOne(http, p, cancel)));
        double seconds = watch.Elapsed.TotalSeconds;
        stopHealth.Cancel();
        await health;

        int mismatches = 0, lost = 0;
        for (int i = 0; i < results.Length; i++)
        {
            if (results[i].Text is null)
                lost++;
            else if (results[i].Text != reference[i])
                mismatches++;
        }

        var ok = results.Where(r => r.Text is not null).ToArray();
        var latencies = ok.Select(r => r.LatencyMs).Order().ToArray();
        var firsts = ok.Select(r => r.FirstTokenMs).Order().ToArray();
        return new LoadTestRow(model.Id, maxBatch, prompts.Count, seconds, ok.Length / seconds, ok.Sum(r => r.Tokens) / seconds,
            Percentile(latencies, 0.50), Percentile(latencies, 0.99), Percentile(firsts, 0.50), server.Scheduler.MaxStateBytesPerSequence,
            mismatches, lost, checks, failures, server.Metrics.PrefillSeconds.Value, server.Metrics.StepSeconds.Value, (long)server.Metrics.Steps.Value);
    }

    /// <summary>Fires <paramref name="count"/> malformed requests (several kinds, <paramref name="parallel"/> at a time), then one good one.</summary>
    public async Task<MalformedSweep> MalformedAsync(int count, int parallel, string expectedFirst, CancellationToken cancel)
    {
        await using var server = await LinearizeServer.StartAsync(model, _base with { MaxBatch = 4, MaxQueue = 16 }, cancel);
        using var http = Client(server);
        string[] bodies =
        {
            "{not json", "", "[]", "null", "{\"prompt\": 5}", "{\"prompt\": \"x\", \"max_tokens\": -1}", "{\"prompt\": \"x\", \"temperature\": \"hot\"}",
            "{\"prompt\": [1, \"a\"]}", "{\"messages\": 3}", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
            "{\"prompt\": \"x\", \"n\": 3}", "{\"prompt\": \"x\", \"stop\": 1}", "{\"prompt\": \"x\", \"top_p\": 7}", "\u0000\u0001\u0002",
            "{\"prompt\": \"x\", \"max_tokens\": 1e400}", new string('[', 5000),
        };
        int good4xx = 0, other = 0;
        using var gate = new SemaphoreSlim(parallel);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync(cancel);
            try
            {
                string path = i % 3 == 0 ? "v1/chat/completions" : "v1/completions";
                using var r = await http.PostAsync(path, new StringContent(bodies[i % bodies.Length], Encoding.UTF8, "application/json"), cancel);
                if ((int)r.StatusCode is >= 400 and < 500)
                    Interlocked.Increment(ref good4xx);
                else
                    Interlocked.Increment(ref other);
            }
            catch (HttpRequestException)
            {
                Interlocked.Increment(ref other);
            }
            finally
            {
                gate.Release();
            }
        }));
        var after = await StreamOne(http, prompts[0], cancel);
        return new MalformedSweep(count, good4xx, other, after.Text == expectedFirst);
    }

    private static HttpClient Client(LinearizeServer server) => new() { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(30) };

    private async Task<(string? Text, int Tokens, double LatencyMs, double FirstTokenMs)> StreamOne(HttpClient http, string prompt, CancellationToken cancel)
    {
        var body = new JsonObject
        {
            ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = 0, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
        };
        var watch = Stopwatch.StartNew();
        double first = -1;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
            if (response.StatusCode != HttpStatusCode.OK)
                return (null, 0, 0, 0);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
            var text = new StringBuilder();
            int tokens = 0;
            bool done = false;
            while (await reader.ReadLineAsync(cancel) is string line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    continue;
                string data = line[6..];
                if (data == "[DONE]")
                {
                    done = true;
                    break;
                }

                var chunk = JsonNode.Parse(data)!;
                if (chunk["usage"] is JsonNode usage)
                    tokens = (int)usage["completion_tokens"]!;
                if (chunk["choices"] is JsonArray { Count: > 0 } choices && (string?)choices[0]!["text"] is { Length: > 0 } piece)
                {
                    if (first < 0)
                        first = watch.Elapsed.TotalMilliseconds;
                    text.Append(piece);
                }
            }

            return done ? (text.ToString(), tokens, watch.Elapsed.TotalMilliseconds, first < 0 ? watch.Elapsed.TotalMilliseconds : first) : (null, 0, 0, 0);
        }
        catch (HttpRequestException)
        {
            return (null, 0, 0, 0);
        }
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
}
