using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Generation.Chat;
using Microsoft.AspNetCore.Http;

namespace Linearize.Serving.Api;

/// <summary>
/// The OpenAI-compatible handlers: <c>/v1/models</c>, <c>/v1/completions</c>, <c>/v1/chat/completions</c> (plain
/// JSON or server-sent events in OpenAI's chunk format ending with <c>data: [DONE]</c>), <c>/health</c>. Every refusal
/// is OpenAI's error JSON naming the field; nothing a client sends can stop the server.
/// </summary>
public sealed class OpenAiEndpoints(ServedModel model, ServerOptions options, BatchScheduler scheduler, ServerMetrics metrics)
{
    // Quotes and apostrophes stay readable in messages; the output is JSON, never embedded in HTML.
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>The one Content-Type of every JSON answer (success or error), so clients that compare it see one value.</summary>
    public const string JsonContentType = "application/json; charset=utf-8";

    public Task Models(HttpContext ctx) => WriteJson(ctx, HttpStatusCode.OK, new JsonObject
    {
        ["object"] = "list",
        ["data"] = new JsonArray(ModelObject()),
    });

    /// <summary><c>GET /v1/models/{id}</c> (the SDKs' <c>models.retrieve</c>): the served model, or 404.</summary>
    public Task Model(HttpContext ctx, string id) => id == model.Id
        ? WriteJson(ctx, HttpStatusCode.OK, ModelObject())
        : WriteError(ctx, UnknownModel(id));

    private JsonObject ModelObject() => new()
    {
        ["id"] = model.Id,
        ["object"] = "model",
        ["created"] = _created,
        ["owned_by"] = "linearize",
    };

    private ApiException UnknownModel(string id) => new(HttpStatusCode.NotFound,
        $"the model '{id}' does not exist; this server serves '{model.Id}' (GET /v1/models)", "model", code: "model_not_found");

    public Task Health(HttpContext ctx) => WriteJson(ctx, HttpStatusCode.OK, new JsonObject
    {
        ["status"] = "ok",
        ["model"] = model.Id,
        ["active_sequences"] = scheduler.ActiveSequences,
        ["prefilling_sequences"] = scheduler.PrefillingSequences,
        ["queue_depth"] = scheduler.QueueDepth,
    });

    public Task Completions(HttpContext ctx) => Handle(ctx, chat: false);

    public Task ChatCompletions(HttpContext ctx) => Handle(ctx, chat: true);

    private async Task Handle(HttpContext ctx, bool chat)
    {
        try
        {
            using var doc = await ReadJson(ctx);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"the request body must be a JSON object, got {RequestFields.Kind(root)}");
            // Absent is accepted (one model is served); a name that is not it is refused, as OpenAI refuses it.
            if (RequestFields.String(root, "model") is string name && name != model.Id)
                throw UnknownModel(name);
            RefuseUnsupported(root);
            var ids = chat ? ChatPrompt(root) : CompletionPrompt(root);
            var p = chat
                ? GenerationParameters.Read(root, options.DefaultChatMaxTokens, "max_completion_tokens", "max_tokens")
                : GenerationParameters.Read(root, 16, "max_tokens");
            int maxTokens = p.MaxTokens;
            if (model.ContextLimit is int limit)
            {
                // The context rule of every command: a softmax model never reads past its positions. A max_tokens the
                // client chose is refused like generate's --max-new-tokens; the default only means "up to the context".
                if (ids.Count >= limit)
                    throw ApiException.BadRequest(
                        $"the prompt has {ids.Count} tokens; this model's context is {limit} positions (it has softmax attention layers), " +
                        "which leaves no room for a reply", chat ? "messages" : "prompt");
                if (ids.Count + (long)maxTokens > limit)
                {
                    if (p.MaxTokensField is string field)
                        throw ApiException.BadRequest(
                            $"the prompt ({ids.Count} tokens) + '{field}' ({maxTokens}) exceeds this model's context of {limit} positions " +
                            $"(it has softmax attention layers); ask for at most {limit - ids.Count}", field);
                    maxTokens = limit - ids.Count;
                }
            }

            int maxPrompt = options.MaxPromptTokens ?? model.ContextLimit ?? ServerOptions.LinearModelPromptTokens;
            if (ids.Count > maxPrompt)
                throw ApiException.BadRequest(
                    $"the prompt has {ids.Count} tokens; this server accepts at most {maxPrompt} (--max-prompt-tokens)",
                    chat ? "messages" : "prompt");
            var request = new GenerationRequest(ids, maxTokens, p.Sampling, p.Stop, ctx.RequestAborted);
            if (!scheduler.TryEnqueue(request))
                throw new ApiException(HttpStatusCode.TooManyRequests,
                    $"the server is busy: {scheduler.ActiveSequences} sequences running and {scheduler.QueueDepth} waiting (--max-queue); retry later",
                    type: "server_busy") { RetryAfterSeconds = 1 };
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
            if (p.Stream)
                await Stream(ctx, request, id, chat, p.IncludeUsage);
            else
                await Whole(ctx, request, id, chat);
            metrics.Latency.Observe(Stopwatch.GetElapsedTime(request.StartTimestamp).TotalSeconds);
        }
        catch (ApiException e)
        {
            await WriteError(ctx, e);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its slot is freed by the scheduler.
        }
        catch (LinearizeException e)
        {
            await WriteError(ctx, ApiException.BadRequest(e.Message));
        }
        catch (Exception e)
        {
            await WriteError(ctx, new ApiException(HttpStatusCode.InternalServerError, e.Message, type: "server_error"));
        }
    }

    /// <summary>Fields that change what OpenAI's API returns but that this server does not implement: refused by name,
    /// never silently ignored (a client asking for JSON mode or a tool call must not get free text as if it had worked).</summary>
    private static void RefuseUnsupported(JsonElement root)
    {
        foreach (var name in new[] { "tools", "functions", "function_call", "logit_bias", "audio", "modalities", "prediction" })
            if (RequestFields.Get(root, name) is JsonElement v && !(v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0)
                                                                && !(v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any()))
                throw ApiException.BadRequest($"'{name}' is not supported by this server (plain text generation only)", name);
        if (RequestFields.Get(root, "tool_choice") is JsonElement tc && !(tc.ValueKind == JsonValueKind.String && tc.GetString() == "none"))
            throw ApiException.BadRequest("'tool_choice' is not supported by this server (no tools); only \"none\" is accepted", "tool_choice");
        if (RequestFields.Get(root, "response_format") is JsonElement rf)
        {
            string? type = rf.ValueKind == JsonValueKind.Object ? RequestFields.String(rf, "type") : null;
            if (type != "text")
                throw ApiException.BadRequest(
                    $"'response_format' {(type is null ? "must be an object with a type" : $"type '{type}' is not supported")}; only {{\"type\": \"text\"}} is (no JSON mode)",
                    "response_format");
        }
    }

    private async Task<JsonDocument> ReadJson(HttpContext ctx)
    {
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        if (buffer.Length > options.MaxRequestBytes)
            throw new ApiException(HttpStatusCode.RequestEntityTooLarge, $"the request body has {buffer.Length} bytes; the limit is {options.MaxRequestBytes}");
        if (buffer.Length == 0)
            throw ApiException.BadRequest("the request body is empty; send a JSON object");
        try
        {
            return JsonDocument.Parse(buffer.ToArray());
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {JsonErrorText.Describe(e)}");
        }
    }

    /// <summary><c>prompt</c>: a string, a one-element array of strings, token ids, or a one-element array of those.</summary>
    private List<int> CompletionPrompt(JsonElement root)
    {
        if (RequestFields.Get(root, "prompt") is not JsonElement v)
            throw ApiException.BadRequest("'prompt' is required", "prompt");
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 1 && v[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
            v = v[0];
        List<int> ids;
        if (v.ValueKind == JsonValueKind.String)
            ids = model.Tokenizer.Encode(v.GetString()!).ToList();
        else if (v.ValueKind == JsonValueKind.Array)
        {
            ids = new List<int>();
            foreach (var e in v.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int t))
                    throw ApiException.BadRequest($"'prompt' must be a string or an array of token ids; found {RequestFields.Kind(e)} in the array (one prompt per request)", "prompt");
                if (t < 0 || t >= model.Config.VocabSize)
                    throw ApiException.BadRequest($"'prompt' token id {t} is outside the vocabulary [0, {model.Config.VocabSize})", "prompt");
                ids.Add(t);
            }
        }
        else
            throw ApiException.BadRequest($"'prompt' must be a string or an array of token ids, got {RequestFields.Kind(v)}", "prompt");

        if (ids.Count == 0)
            throw ApiException.BadRequest("'prompt' has no tokens (and this tokenizer adds no BOS): nothing to condition on", "prompt");
        return ids;
    }

    private List<int> ChatPrompt(JsonElement root)
    {
        if (RequestFields.Get(root, "messages") is not JsonElement v)
            throw ApiException.BadRequest("'messages' is required", "messages");
        if (v.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"'messages' must be an array, got {RequestFields.Kind(v)}", "messages");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var m in v.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'{where}' must be an object, got {RequestFields.Kind(m)}", "messages");
            string role = RequestFields.String(m, "role") ?? throw ApiException.BadRequest($"'{where}.role' is required", "messages");
            if (role == "developer")
                role = "system"; // OpenAI's newer name for system instructions
            if (!ChatMessage.Roles.Contains(role))
                throw ApiException.BadRequest($"'{where}.role' must be system, user or assistant, got '{role}'", "messages");
            if (RequestFields.Get(m, "tool_calls") is not null || RequestFields.Get(m, "function_call") is not null)
                throw ApiException.BadRequest($"'{where}' has tool calls; this server does not support tools", "messages");
            messages.Add(new ChatMessage(role, Content(m, where)));
        }

        if (messages.Count == 0)
            throw ApiException.BadRequest("'messages' is empty", "messages");
        var ids = model.Template.Encode(model.Template.Render(messages, addGenerationPrompt: true, model.Tokenizer.EosId), model.Tokenizer, atStart: true);
        if (ids.Count == 0)
            throw ApiException.BadRequest("the rendered conversation has no tokens", "messages");
        return ids;
    }

    /// <summary>A message's content: a string, or an array of <c>{type: "text", text}</c> parts. Required: without tool
    /// calls (unsupported) a message without content has nothing to say, and rendering it as empty would hide a client bug.</summary>
    private static string Content(JsonElement m, string where)
    {
        if (RequestFields.Get(m, "content") is not JsonElement c)
            throw ApiException.BadRequest($"'{where}.content' is required", "messages");
        if (c.ValueKind == JsonValueKind.String)
            return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"'{where}.content' must be a string or an array of text parts, got {RequestFields.Kind(c)}", "messages");
        var text = new StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || RequestFields.String(part, "type") != "text")
                throw ApiException.BadRequest($"'{where}.content' parts must be {{\"type\": \"text\", \"text\": ...}} (this model reads text only)", "messages");
            text.Append(RequestFields.String(part, "text") ?? "");
        }

        return text.ToString();
    }

    private async Task Whole(HttpContext ctx, GenerationRequest request, string id, bool chat)
    {
        var text = new StringBuilder();
        string reason = "length";
        await foreach (var e in request.Events.ReadAllAsync(ctx.RequestAborted))
        {
            text.Append(e.Text);
            if (e.FinishReason is string r)
                reason = r;
        }

        var choice = chat
            ? new JsonObject
            {
                ["index"] = 0,
                ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() },
                ["logprobs"] = null,
                ["finish_reason"] = reason,
            }
            : new JsonObject { ["text"] = text.ToString(), ["index"] = 0, ["logprobs"] = null, ["finish_reason"] = reason };
        var body = Envelope(id, chat ? "chat.completion" : "text_completion", choice);
        body["usage"] = Usage(request);
        await WriteJson(ctx, HttpStatusCode.OK, body);
    }

    private async Task Stream(HttpContext ctx, GenerationRequest request, string id, bool chat, bool includeUsage)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        string kind = chat ? "chat.completion.chunk" : "text_completion";
        if (chat)
            await Send(ctx, Envelope(id, kind, ChatChunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null)));
        try
        {
            await foreach (var e in request.Events.ReadAllAsync(ctx.RequestAborted))
            {
                if (e.Text.Length > 0)
                    await Send(ctx, Envelope(id, kind, chat
                        ? ChatChunk(new JsonObject { ["content"] = e.Text }, null)
                        : new JsonObject { ["text"] = e.Text, ["index"] = 0, ["logprobs"] = null, ["finish_reason"] = null }));
                if (e.FinishReason is string reason)
                    await Send(ctx, Envelope(id, kind, chat
                        ? ChatChunk(new JsonObject(), reason)
                        : new JsonObject { ["text"] = "", ["index"] = 0, ["logprobs"] = null, ["finish_reason"] = reason }));
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Headers are gone; the error travels as an event, as OpenAI's API does mid-stream.
            await Send(ctx, ErrorBody(new ApiException(HttpStatusCode.InternalServerError, e.Message, type: "server_error")));
        }

        if (includeUsage)
        {
            var usage = Envelope(id, kind, null);
            usage["usage"] = Usage(request);
            await Send(ctx, usage);
        }

        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    private static JsonObject ChatChunk(JsonObject delta, string? reason) =>
        new() { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = reason };

    private JsonObject Envelope(string id, string kind, JsonObject? choice) => new()
    {
        ["id"] = id,
        ["object"] = kind,
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["model"] = model.Id,
        ["choices"] = choice is null ? new JsonArray() : new JsonArray(choice),
    };

    private static JsonObject Usage(GenerationRequest r) => new()
    {
        ["prompt_tokens"] = r.PromptIds.Count,
        ["completion_tokens"] = r.CompletionTokens,
        ["total_tokens"] = r.PromptIds.Count + r.CompletionTokens,
    };

    private static async Task Send(HttpContext ctx, JsonObject chunk)
    {
        await ctx.Response.WriteAsync("data: " + chunk.ToJsonString(Compact) + "\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    public static JsonObject ErrorBody(ApiException e) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = e.Message,
            ["type"] = e.Type,
            ["param"] = e.Param,
            ["code"] = e.Code,
        },
    };

    public async Task WriteError(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted)
            return;
        if (e.RetryAfterSeconds is int seconds)
            ctx.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await WriteJson(ctx, e.Status, ErrorBody(e));
    }

    private static async Task WriteJson(HttpContext ctx, HttpStatusCode status, JsonObject body)
    {
        ctx.Response.StatusCode = (int)status;
        ctx.Response.ContentType = JsonContentType;
        try
        {
            await ctx.Response.WriteAsync(body.ToJsonString(Compact), ctx.RequestAborted);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The metrics label of a request: its route when known, so a scan of random paths cannot grow the series.</summary>
    public static string Label(HttpContext ctx) => ctx.Request.Path.Value switch
    {
        "/v1/completions" or "/v1/chat/completions" or "/v1/models" or "/health" or "/metrics" => ctx.Request.Path.Value,
        string p when p.StartsWith("/v1/models/", StringComparison.Ordinal) => "/v1/models/{id}",
        _ => "other",
    };
}
