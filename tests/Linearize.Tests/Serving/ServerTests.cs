using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Generation.Chat;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = OpenAI.Chat.ChatMessage;

namespace Linearize.Tests.Serving;

/// <summary>
/// The OpenAI-compatible server, in-process on a loopback port, spoken to by the official OpenAI .NET SDK and by raw
/// HTTP: answers equal greedy decoding of the same prompt alone, streaming equals non-streaming, every malformed
/// request is a 400 naming its field, a full queue is a 429, a client that goes away frees its slot.
/// </summary>
[Collection("Torch")]
public sealed class ServerTests
{
    private static OpenAIClientOptions Options(TestServer s) => new() { Endpoint = new Uri(s.Server.BaseAddress, "v1") };

    private static ChatClient Chat(TestServer s) => new(s.Served.Id, new ApiKeyCredential("unused"), Options(s));

    private List<int> ChatIds(TestServer s, params (string Role, string Content)[] messages) =>
        s.Served.Template.Encode(s.Served.Template.Render(messages.Select(m => new Linearize.Generation.Chat.ChatMessage(m.Role, m.Content)).ToList(), true,
            s.Served.Tokenizer.EosId), s.Served.Tokenizer, atStart: true);

    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    public async Task SdkChatAndStreamingEqualGreedyDecodingAlone(string method)
    {
        await using var s = await TestServer.StartAsync(method);
        var client = Chat(s);
        var messages = new List<ChatMessage> { new SystemChatMessage("Be brief."), new UserChatMessage("Tell me a story about a cat.") };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        var expected = s.Alone(ChatIds(s, ("system", "Be brief."), ("user", "Tell me a story about a cat.")), 24);
        Assert.True(expected.Text.Length > 0, "the tiny model produced nothing to compare");

        ChatCompletion whole = (await client.CompleteChatAsync(messages, options)).Value;
        Assert.Equal(expected.Text, whole.Content[0].Text);
        Assert.Equal(expected.Finish == "stop" ? ChatFinishReason.Stop : ChatFinishReason.Length, whole.FinishReason);
        Assert.Equal(expected.Tokens, whole.Usage.OutputTokenCount);
        Assert.Equal(ChatIds(s, ("system", "Be brief."), ("user", "Tell me a story about a cat.")).Count, whole.Usage.InputTokenCount);

        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
                streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }

        Assert.Equal(expected.Text, streamed.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.True(updates > 2, $"only {updates} stream updates: not streamed");
    }

    [Fact]
    public async Task CompletionsWithStopStringsTokenIdPromptsAndUsage()
    {
        await using var s = await TestServer.StartAsync("teacher");
        var ids = s.Served.Tokenizer.Encode("Once upon a time");
        var alone = s.Alone(ids, 30);
        Assert.True(alone.Text.Length >= 6, $"too little text to cut: '{alone.Text}'");

        // The OpenAI .NET SDK keeps its legacy completions client internal, so /v1/completions is spoken raw.
        var json = (await Post(s, "/v1/completions", new JsonObject { ["model"] = s.Served.Id, ["prompt"] = "Once upon a time", ["max_tokens"] = 30, ["temperature"] = 0 })).Json!;
        Assert.Equal(alone.Text, (string?)json["choices"]![0]!["text"]);
        Assert.Equal(ids.Count, (int)json["usage"]!["prompt_tokens"]!);
        Assert.Equal(alone.Tokens, (int)json["usage"]!["completion_tokens"]!);
        Assert.Equal(ids.Count + alone.Tokens, (int)json["usage"]!["total_tokens"]!);

        // A stop string cut from the middle of the greedy text ends the answer just before it, in both modes.
        string stop = alone.Text.Substring(3, 2);
        int cut = alone.Text.IndexOf(stop, StringComparison.Ordinal);
        var request = new JsonObject { ["prompt"] = "Once upon a time", ["max_tokens"] = 30, ["temperature"] = 0, ["stop"] = new JsonArray(stop) };
        var whole = await Post(s, "/v1/completions", request);
        Assert.Equal(HttpStatusCode.OK, whole.Status);
        Assert.Equal(alone.Text[..cut], (string?)whole.Json!["choices"]![0]!["text"]);
        Assert.Equal("stop", (string?)whole.Json!["choices"]![0]!["finish_reason"]);

        request["stream"] = true;
        var (chunks, done) = await Stream(s, "/v1/completions", request);
        Assert.True(done, "the stream did not end with data: [DONE]");
        Assert.Equal(alone.Text[..cut], string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"])));
        Assert.Equal("stop", (string?)chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.All(chunks, c => Assert.Equal("text_completion", (string?)c["object"]));

        // Token-id prompts are accepted as OpenAI's API does.
        var byIds = await Post(s, "/v1/completions", new JsonObject
        {
            ["prompt"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()), ["max_tokens"] = 30, ["temperature"] = 0,
        });
        Assert.Equal(alone.Text, (string?)byIds.Json!["choices"]![0]!["text"]);

        var models = JsonNode.Parse(await s.Http.GetStringAsync("/v1/models"))!;
        Assert.Equal("tiny-teacher", (string?)models["data"]![0]!["id"]);
        string metrics = await s.Http.GetStringAsync("/metrics");
        Assert.Contains("linearize_generated_tokens_total", metrics);
        Assert.Contains("linearize_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", metrics);
    }

    public static IEnumerable<object[]> Malformed() => new[]
    {
        new object[] { "/v1/completions", "{not json", null! },
        new object[] { "/v1/completions", "", null! },
        new object[] { "/v1/completions", "[1, 2]", null! },
        new object[] { "/v1/completions", """{"max_tokens": 5}""", "prompt" },
        new object[] { "/v1/completions", """{"prompt": 7}""", "prompt" },
        new object[] { "/v1/completions", """{"prompt": [1, "a"]}""", "prompt" },
        new object[] { "/v1/completions", """{"prompt": [1, 99999]}""", "prompt" },
        new object[] { "/v1/completions", """{"prompt": "hi", "max_tokens": -1}""", "max_tokens" },
        new object[] { "/v1/completions", """{"prompt": "hi", "max_tokens": 0}""", "max_tokens" },
        new object[] { "/v1/completions", """{"prompt": "hi", "max_tokens": "ten"}""", "max_tokens" },
        new object[] { "/v1/completions", """{"prompt": "hi", "max_tokens": 2.5}""", "max_tokens" },
        new object[] { "/v1/completions", """{"prompt": "hi", "temperature": "hot"}""", "temperature" },
        new object[] { "/v1/completions", """{"prompt": "hi", "temperature": -1}""", "temperature" },
        new object[] { "/v1/completions", """{"prompt": "hi", "top_p": 0}""", "top_p" },
        new object[] { "/v1/completions", """{"prompt": "hi", "seed": "x"}""", "seed" },
        new object[] { "/v1/completions", """{"prompt": "hi", "stop": 3}""", "stop" },
        new object[] { "/v1/completions", """{"prompt": "hi", "stop": ["a","b","c","d","e"]}""", "stop" },
        new object[] { "/v1/completions", """{"prompt": "hi", "n": 2}""", "n" },
        new object[] { "/v1/completions", """{"prompt": "hi", "stream": "yes"}""", "stream" },
        new object[] { "/v1/completions", """{"prompt": "hi", "model": 5}""", "model" },
        new object[] { "/v1/completions", """{"prompt": "hi", "logprobs": 3}""", "logprobs" },
        new object[] { "/v1/completions", "{\"prompt\": \"" + new string('a', 400) + "\"}", "prompt" }, // past the 256-position context
        new object[] { "/v1/chat/completions", """{"messages": "hi"}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": []}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "tool", "content": "x"}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"content": "x"}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": 5}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -5}""", "max_completion_tokens" },
        // What is not implemented is refused by name, never ignored.
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user"}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": null}]}""", "messages" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}""", "tools" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}""", "tool_choice" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}""", "response_format" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {}}}""", "response_format" },
        new object[] { "/v1/completions", """{"prompt": "hi", "logit_bias": {"5": 100}}""", "logit_bias" },
        // One context rule: a max_tokens that would pass the softmax model's 256 positions is refused, as generate refuses it.
        new object[] { "/v1/completions", """{"prompt": "hi", "max_tokens": 300}""", "max_tokens" },
        new object[] { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1000}""", "max_completion_tokens" },
    };

    [Fact]
    public async Task EveryMalformedRequestIsA400NamingItsFieldAndTheServerKeepsServing()
    {
        await using var s = await TestServer.StartAsync("teacher");
        foreach (var row in Malformed())
        {
            string path = (string)row[0], body = (string)row[1];
            string? param = (string?)row[2];
            using var response = await s.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{path} {body}: {(int)response.StatusCode} {text}");
            var error = JsonNode.Parse(text)!["error"]!;
            Assert.Equal("invalid_request_error", (string?)error["type"]);
            Assert.False(string.IsNullOrEmpty((string?)error["message"]));
            Assert.Equal(param, (string?)error["param"]);
        }

        using (var notFound = await s.Http.GetAsync("/v2/nothing"))
            Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);
        var ok = await Post(s, "/v1/completions", new JsonObject { ["prompt"] = "hi", ["max_tokens"] = 3, ["temperature"] = 0 });
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Equal(HttpStatusCode.OK, (await s.Http.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task ConcurrentStreamsEachEqualTheirOutputAloneWhileHealthAnswers()
    {
        await using var s = await TestServer.StartAsync("liger-gla", maxBatch: 3);
        string[] prompts = Enumerable.Range(0, 8).Select(i => $"Story {i}: the {new[] { "cat", "dog", "sun", "tree" }[i % 4]} was").ToArray();
        var expected = prompts.Select((p, i) => s.Alone(s.Served.Tokenizer.Encode(p), 10 + 3 * i)).ToArray();
        using var stopHealth = new CancellationTokenSource();
        int healthFailures = 0, healthChecks = 0;
        var health = Task.Run(async () =>
        {
            while (!stopHealth.IsCancellationRequested)
            {
                try
                {
                    using var r = await s.Http.GetAsync("/health");
                    if (r.StatusCode != HttpStatusCode.OK)
                        healthFailures++;
                }
                catch (HttpRequestException)
                {
                    healthFailures++;
                }

                healthChecks++;
                await Task.Delay(20);
            }
        });
        var outputs = await Task.WhenAll(prompts.Select(async (p, i) =>
        {
            var (chunks, done) = await Stream(s, "/v1/completions", new JsonObject
            {
                ["prompt"] = p, ["max_tokens"] = 10 + 3 * i, ["temperature"] = 0, ["stream"] = true,
            });
            Assert.True(done);
            return string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"]));
        }));
        stopHealth.Cancel();
        await health;
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(expected[i].Text, outputs[i]);
        Assert.Equal(0, healthFailures);
        Assert.True(healthChecks > 0);
    }

    [Fact]
    public async Task AFullQueueAnswers429AndADisconnectedClientFreesItsSlot()
    {
        // One slot, no queue: a linear model (no context limit) streaming a very long answer holds the slot.
        await using var s = await TestServer.StartAsync("liger-gla", maxBatch: 1, maxQueue: 0);
        using var hog = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new JsonObject { ["prompt"] = "hog", ["max_tokens"] = 10_000_000, ["temperature"] = 0, ["stream"] = true }),
        };
        var response = await s.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, hog.Token);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(hog.Token));
        Assert.StartsWith("data: ", await reader.ReadLineAsync(hog.Token));
        Assert.Equal(1, s.Server.Scheduler.ActiveSequences);

        var busy = await Post(s, "/v1/completions", new JsonObject { ["prompt"] = "hi", ["max_tokens"] = 2 });
        Assert.Equal(HttpStatusCode.TooManyRequests, busy.Status);
        Assert.Equal("server_busy", (string?)busy.Json!["error"]!["type"]);

        // The client goes away: the scheduler drops the sequence at its next step and the slot serves again.
        hog.Cancel();
        response.Dispose();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (s.Server.Scheduler.ActiveSequences > 0 && DateTime.UtcNow < deadline)
            await Task.Delay(20);
        Assert.Equal(0, s.Server.Scheduler.ActiveSequences);
        var ok = await Post(s, "/v1/completions", new JsonObject { ["prompt"] = "hi", ["max_tokens"] = 2, ["temperature"] = 0 });
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Contains("linearize_disconnected_requests_total 1", await s.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task ModelsAreCheckedAndRetrievableAndEveryAnswerHasOneContentTypeAndARequestId()
    {
        await using var s = await TestServer.StartAsync("teacher");

        // An unknown model is a 404 with OpenAI's code; the served one (or none) is answered.
        var unknown = await Post(s, "/v1/completions", new JsonObject { ["model"] = "gpt-4o", ["prompt"] = "hi", ["max_tokens"] = 2 });
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.Equal("model_not_found", (string?)unknown.Json!["error"]!["code"]);
        Assert.Equal("model", (string?)unknown.Json!["error"]!["param"]);
        var chatUnknown = await Post(s, "/v1/chat/completions", new JsonObject
        {
            ["model"] = "nope", ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "x" }),
        });
        Assert.Equal(HttpStatusCode.NotFound, chatUnknown.Status);
        Assert.Equal(HttpStatusCode.OK, (await Post(s, "/v1/completions", new JsonObject { ["prompt"] = "hi", ["max_tokens"] = 2 })).Status);

        // GET /v1/models/{id}, through the SDK's models.retrieve and raw.
        var retrieved = await new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential("unused"), Options(s)).GetModelAsync(s.Served.Id);
        Assert.Equal(s.Served.Id, retrieved.Value.Id);
        using (var missing = await s.Http.GetAsync("/v1/models/nope"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            Assert.Equal("model_not_found", (string?)JsonNode.Parse(await missing.Content.ReadAsStringAsync())!["error"]!["code"]);
        }

        // Without max_tokens a prompt near the context gets what room is left (the default is "up to the context").
        var near = await Post(s, "/v1/completions", new JsonObject { ["prompt"] = new string('a', 250), ["temperature"] = 0 });
        Assert.Equal(HttpStatusCode.OK, near.Status);
        Assert.InRange((int)near.Json!["usage"]!["total_tokens"]!, 1, s.Model.Config.MaxPositionEmbeddings);

        // One Content-Type for every JSON answer, success or error; x-request-id on everything, the client's echoed.
        var contentTypes = new HashSet<string>();
        var requests = new Func<HttpRequestMessage>[]
        {
            () => new(HttpMethod.Get, "/v1/models"),
            () => new(HttpMethod.Get, "/v1/models/" + s.Served.Id),
            () => new(HttpMethod.Get, "/v1/models/nope"),
            () => new(HttpMethod.Get, "/health"),
            () => new(HttpMethod.Get, "/v2/nothing"),
            () => new(HttpMethod.Post, "/v1/completions") { Content = new StringContent("""{"prompt": "hi", "max_tokens": 2}""", Encoding.UTF8, "application/json") },
            () => new(HttpMethod.Post, "/v1/completions") { Content = new StringContent("{bad", Encoding.UTF8, "application/json") },
        };
        foreach (var make in requests)
        {
            using var generated = make();
            using var response = await s.Http.SendAsync(generated);
            contentTypes.Add(response.Content.Headers.ContentType!.ToString());
            Assert.True(response.Headers.TryGetValues("x-request-id", out var ids), $"{generated.RequestUri}: no x-request-id");
            Assert.False(string.IsNullOrWhiteSpace(ids!.Single()));

            using var mine = make();
            mine.Headers.Add("x-request-id", "client-42");
            using var echoed = await s.Http.SendAsync(mine);
            Assert.Equal("client-42", echoed.Headers.GetValues("x-request-id").Single());
        }

        Assert.Equal(new[] { Linearize.Serving.Api.OpenAiEndpoints.JsonContentType }, contentTypes.ToArray());
        using (var metrics = await s.Http.GetAsync("/metrics"))
            Assert.True(metrics.Headers.Contains("x-request-id"));
    }

    [Fact]
    public async Task TheQueueHoldsAtMostMaxQueueWaitingRequestsEvenWhileASlotIsBeingFilled()
    {
        // One slot, one waiting place. The hog's long prompt is prefilled by TorchSharp (seconds): while that runs the
        // slot is taken though the hog is not yet in the running batch, and requests arriving then must see it taken.
        await using var s = await TestServer.StartAsync("liger-gla", maxBatch: 1, maxQueue: 1);
        using var hog = new CancellationTokenSource();
        const int hogPrompt = 6000;
        var hogResponse = s.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new JsonObject { ["prompt"] = new string('q', hogPrompt), ["max_tokens"] = 10_000_000, ["temperature"] = 0, ["stream"] = true }),
        }, HttpCompletionOption.ResponseHeadersRead, hog.Token);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (s.Server.Metrics.PromptTokens.Value < hogPrompt && DateTime.UtcNow < deadline)
            await Task.Delay(1); // the scheduler has taken the hog and started its prefill
        Assert.False(hogResponse.IsCompleted, "the hog's prefill ended before the test could fill the queue");

        var others = new List<Task<HttpResponseMessage>>();
        while (!hogResponse.IsCompleted || others.Count < 3)
        {
            others.Add(s.Http.PostAsync("/v1/completions",
                new StringContent("""{"prompt": "hi", "max_tokens": 2, "temperature": 0}""", Encoding.UTF8, "application/json")));
            await Task.Delay(5);
        }

        var response = await hogResponse;
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(hog.Token));
        Assert.StartsWith("data: ", await reader.ReadLineAsync(hog.Token));
        Assert.True(s.Server.Scheduler.QueueDepth <= 1, $"{s.Server.Scheduler.QueueDepth} requests waiting with --max-queue 1");

        // Every other request was refused with a Retry-After, except the one waiting place. That one is still waiting,
        // or already served if the hog's greedy text reached the end-of-text token (a random model may emit it).
        while (others.Count(t => !t.IsCompleted) > 1 && DateTime.UtcNow < deadline.AddSeconds(30))
            await Task.Delay(20);
        var refused = new List<Task<HttpResponseMessage>>();
        foreach (var t in others.Where(t => t.IsCompleted))
        {
            var answer = await t;
            if (answer.StatusCode != HttpStatusCode.TooManyRequests)
                continue;
            Assert.Equal(TimeSpan.FromSeconds(1), answer.Headers.RetryAfter?.Delta);
            refused.Add(t);
            answer.Dispose();
        }

        // Whether the hog still holds the slot: its stream goes on (a greedy random model may instead end its text at
        // once, which frees the slot for whoever arrives next and leaves nothing to check here but the refusals' form).
        bool hogRunning = true;
        for (int line = 0; line < 6 && hogRunning; line++)
            hogRunning = await reader.ReadLineAsync(hog.Token) is string l && !l.Contains("[DONE]", StringComparison.Ordinal);
        foreach (var t in others.Where(t => !refused.Contains(t) && t.IsCompleted))
            Assert.Equal(HttpStatusCode.OK, (await t).StatusCode); // a request that got a place was served, never failed
        if (hogRunning)
            Assert.Equal(others.Count - 1, refused.Count);
        hog.Cancel();
        response.Dispose();
        foreach (var t in others.Where(t => !refused.Contains(t)))
        {
            using var served = await t;
            Assert.Equal(HttpStatusCode.OK, served.StatusCode); // served once the slot came free
        }
    }

    internal static async Task<(HttpStatusCode Status, JsonNode? Json)> Post(TestServer s, string path, JsonObject body)
    {
        using var response = await s.Http.PostAsync(path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
    }

    /// <summary>Reads a server-sent event stream: the JSON chunks, and whether it ended with <c>data: [DONE]</c>.</summary>
    internal static async Task<(List<JsonNode> Chunks, bool Done)> Stream(TestServer s, string path, JsonObject body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = await s.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var chunks = new List<JsonNode>();
        bool done = false;
        while (await reader.ReadLineAsync() is string line)
        {
            if (line.Length == 0)
                continue;
            Assert.StartsWith("data: ", line);
            string data = line["data: ".Length..];
            if (data == "[DONE]")
            {
                done = true;
                continue;
            }

            Assert.False(done, "data after [DONE]");
            chunks.Add(JsonNode.Parse(data)!);
        }

        return (chunks, done);
    }
}
