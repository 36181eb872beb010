using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Linearize.Tests.Serving;

/// <summary>Chunked prefill in the server: a long prompt is read in slices between decode steps, so a short request
/// behind it is answered first; prompts being read count as active; the prompt bound is enforced.</summary>
[Collection("Torch")]
public sealed class ServerPrefillTests
{
    [Fact]
    public async Task ALongPromptDoesNotStallAShortRequest()
    {
        await using var s = await TestServer.StartAsync("liger-gla", maxBatch: 4, prefillSlice: 2, maxPromptTokens: 1_000_000);
        var longPrompt = new JsonArray(Enumerable.Range(0, 200_000).Select(i => (JsonNode)(3 + i % 60)).ToArray());
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new JsonObject { ["prompt"] = longPrompt, ["max_tokens"] = 2, ["temperature"] = 0, ["stream"] = true }),
        };
        using var reading = new CancellationTokenSource();
        var longFirstToken = Task.Run(async () =>
        {
            // The response starts with the first token, after the whole prompt was read.
            using var response = await s.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, reading.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            await reader.ReadLineAsync(reading.Token);
            return DateTime.UtcNow;
        });

        // While the long prompt is being read, /health counts it.
        var health = JsonNode.Parse(await s.Http.GetStringAsync("/health"))!;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((int)health["prefilling_sequences"]! == 0 && !longFirstToken.IsCompleted && DateTime.UtcNow < deadline)
            health = JsonNode.Parse(await s.Http.GetStringAsync("/health"))!;
        Assert.True((int)health["active_sequences"]! >= (int)health["prefilling_sequences"]!);
        Assert.False(longFirstToken.IsCompleted, "the long prompt finished before the test could observe it; make it longer");
        Assert.Equal(1, (int)health["prefilling_sequences"]!);

        var shortAnswer = await ServerTests.Post(s, "/v1/completions", new JsonObject { ["prompt"] = "hi", ["max_tokens"] = 3, ["temperature"] = 0 });
        Assert.Equal(HttpStatusCode.OK, shortAnswer.Status);
        Assert.True(!longFirstToken.IsCompleted, "the short request waited for the long prompt's prefill");
        reading.Cancel(); // the long request's client goes away; the server drops it
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => longFirstToken);
    }

    [Fact]
    public async Task APromptOverTheBoundIsA400NamingThePrompt()
    {
        await using var s = await TestServer.StartAsync("liger-gla", maxPromptTokens: 10);
        var tooLong = new JsonArray(Enumerable.Range(0, 11).Select(i => (JsonNode)(3 + i)).ToArray());
        var (status, json) = await ServerTests.Post(s, "/v1/completions", new JsonObject { ["prompt"] = tooLong, ["max_tokens"] = 1 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prompt", (string?)json!["error"]!["param"]);
        Assert.Contains("--max-prompt-tokens", (string?)json["error"]!["message"]);
        var ok = await ServerTests.Post(s, "/v1/completions", new JsonObject { ["prompt"] = new JsonArray(3, 4, 5), ["max_tokens"] = 1 });
        Assert.Equal(HttpStatusCode.OK, ok.Status);
    }
}
