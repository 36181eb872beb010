using System.Text.Json;
using System.Text.Json.Nodes;

namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// Typed reads of the <c>linearization</c> section of a <c>config.json</c>: an absent or null key gives null (the
/// caller's default); a value of the wrong type or range is an error naming the file and the field, e.g.
/// <c>model/config.json: 'linearization.window' must be at least 1, got -5</c>.
/// </summary>
internal sealed class SectionReader(JsonObject section, string source)
{
    public LinearizeException Error(string key, string problem) =>
        new($"{source}: '{LinearizationConfig.SectionName}.{key}' {problem}");

    private JsonValue? Value(string key, string expected)
    {
        var node = section[key];
        if (node is null)
            return null;
        return node as JsonValue ?? throw Error(key, $"must be {expected}, got {node.ToJsonString()}");
    }

    public int? Int(string key, int min = int.MinValue)
    {
        if (Value(key, "an integer") is not JsonValue v)
            return null;
        if (!(v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int x)))
        {
            if (v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
                x = (int)d;
            else
                throw Error(key, $"must be an integer, got {v.ToJsonString()}");
        }

        return x >= min ? x : throw Error(key, $"must be at least {min}, got {x}");
    }

    public double? Double(string key, double min = double.NegativeInfinity)
    {
        if (Value(key, "a number") is not JsonValue v)
            return null;
        if (v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue(out double x) || !double.IsFinite(x))
            throw Error(key, $"must be a number, got {v.ToJsonString()}");
        return x >= min ? x : throw Error(key, $"must be at least {min}, got {x}");
    }

    public bool? Bool(string key)
    {
        if (Value(key, "true or false") is not JsonValue v)
            return null;
        return v.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(key, $"must be true or false, got {v.ToJsonString()}"),
        };
    }

    public string? String(string key)
    {
        if (Value(key, "a string") is not JsonValue v)
            return null;
        return v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Error(key, $"must be a string, got {v.ToJsonString()}");
    }

    public int[] IntArray(string key)
    {
        var node = section[key];
        if (node is null)
            return Array.Empty<int>();
        if (node is not JsonArray array)
            throw Error(key, $"must be an array of integers, got {node.ToJsonString()}");
        return array.Select(n => n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int x)
            ? x
            : throw Error(key, $"must hold only integers, got {n?.ToJsonString() ?? "null"}")).ToArray();
    }
}
