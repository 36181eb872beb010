using System.Text.Json;
using Linearize.Generation;

namespace Linearize.Serving.Api;

/// <summary>The sampling and streaming fields shared by <c>/v1/completions</c> and <c>/v1/chat/completions</c>.</summary>
/// <param name="MaxTokensField">The field the client set <c>max_tokens</c> with, or null when it took the default.</param>
public sealed record GenerationParameters(int MaxTokens, SamplingOptions Sampling, IReadOnlyList<string> Stop, bool Stream, bool IncludeUsage,
    string? MaxTokensField = null)
{
    /// <summary>Reads them; <paramref name="maxTokenFields"/> are the names <c>max_tokens</c> may go by (chat also
    /// accepts OpenAI's newer <c>max_completion_tokens</c>, which the official SDKs send).</summary>
    public static GenerationParameters Read(JsonElement root, int defaultMaxTokens, params string[] maxTokenFields)
    {
        long? max = null;
        string? maxField = null;
        foreach (var name in maxTokenFields)
        {
            if (max is not null || RequestFields.Integer(root, name, long.MinValue, long.MaxValue) is not long m)
                continue;
            if (m < 1)
                throw ApiException.BadRequest($"'{name}' must be at least 1, got {m}", name);
            max = Math.Min(m, int.MaxValue);
            maxField = name;
        }

        long n = RequestFields.Integer(root, "n", long.MinValue, long.MaxValue) ?? 1;
        if (n != 1)
            throw ApiException.BadRequest($"'n' must be 1 (one choice per request), got {n}", "n");
        if (RequestFields.Bool(root, "echo") == true)
            throw ApiException.BadRequest("'echo' is not supported", "echo");
        if (RequestFields.Get(root, "logprobs") is JsonElement lp && lp.ValueKind != JsonValueKind.False)
            throw ApiException.BadRequest("'logprobs' is not supported", "logprobs");
        double temperature = RequestFields.Number(root, "temperature", 0, 2) ?? 1.0;
        double topP = RequestFields.Number(root, "top_p", 0, 1, minExclusive: true) ?? 1.0;
        ulong seed = RequestFields.Seed(root, "seed") ?? (ulong)Random.Shared.NextInt64();
        var stop = RequestFields.Stop(root);
        bool stream = RequestFields.Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (RequestFields.Get(root, "stream_options") is JsonElement so)
        {
            if (so.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'stream_options' must be an object, got {RequestFields.Kind(so)}", "stream_options");
            includeUsage = RequestFields.Bool(so, "include_usage") ?? false;
        }

        return new GenerationParameters((int)(max ?? defaultMaxTokens), new SamplingOptions(temperature, 0, topP, seed), stop, stream, includeUsage, maxField);
    }
}
