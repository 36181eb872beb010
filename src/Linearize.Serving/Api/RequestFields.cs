using System.Text.Json;

namespace Linearize.Serving.Api;

/// <summary>
/// Typed reads of an OpenAI request body. A field that is absent or null takes its default; a field of the wrong type
/// or range is a 400 naming it. Unknown fields are ignored, as OpenAI-compatible servers do (clients send extras such
/// as <c>user</c>).
/// </summary>
public static class RequestFields
{
    public static JsonElement? Get(JsonElement root, string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public static string? String(JsonElement root, string name)
    {
        if (Get(root, name) is not JsonElement v)
            return null;
        if (v.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest($"'{name}' must be a string, got {Kind(v)}", name);
        return v.GetString();
    }

    public static bool? Bool(JsonElement root, string name)
    {
        if (Get(root, name) is not JsonElement v)
            return null;
        if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw ApiException.BadRequest($"'{name}' must be a boolean, got {Kind(v)}", name);
        return v.GetBoolean();
    }

    public static long? Integer(JsonElement root, string name, long min, long max)
    {
        if (Get(root, name) is not JsonElement v)
            return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
            throw ApiException.BadRequest($"'{name}' must be an integer, got {Describe(v)}", name);
        if (x < min || x > max)
            throw ApiException.BadRequest($"'{name}' must be in [{min}, {max}], got {x}", name);
        return x;
    }

    /// <summary>An unsigned 64-bit seed; negative seeds (OpenAI allows them) are reinterpreted bit for bit.</summary>
    public static ulong? Seed(JsonElement root, string name)
    {
        if (Get(root, name) is not JsonElement v)
            return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetUInt64(out ulong u))
            return u;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long s))
            return unchecked((ulong)s);
        throw ApiException.BadRequest($"'{name}' must be an integer, got {Describe(v)}", name);
    }

    public static double? Number(JsonElement root, string name, double min, double max, bool minExclusive = false)
    {
        if (Get(root, name) is not JsonElement v)
            return null;
        if (v.ValueKind != JsonValueKind.Number)
            throw ApiException.BadRequest($"'{name}' must be a number, got {Kind(v)}", name);
        double x = v.GetDouble();
        if (x > max || (minExclusive ? x <= min : x < min))
            throw ApiException.BadRequest($"'{name}' must be in {(minExclusive ? "(" : "[")}{min}, {max}], got {x}", name);
        return x;
    }

    /// <summary><c>stop</c>: a string or an array of up to 4 strings.</summary>
    public static IReadOnlyList<string> Stop(JsonElement root)
    {
        if (Get(root, "stop") is not JsonElement v)
            return Array.Empty<string>();
        if (v.ValueKind == JsonValueKind.String)
            return new[] { v.GetString()! };
        if (v.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"'stop' must be a string or an array of strings, got {Kind(v)}", "stop");
        var stops = new List<string>();
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'stop' must hold only strings, found {Kind(e)}", "stop");
            stops.Add(e.GetString()!);
        }

        if (stops.Count > 4)
            throw ApiException.BadRequest($"'stop' may hold at most 4 sequences, got {stops.Count}", "stop");
        return stops;
    }

    public static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };

    private static string Describe(JsonElement v) => v.ValueKind == JsonValueKind.Number ? $"{v.GetRawText()}" : Kind(v);
}
