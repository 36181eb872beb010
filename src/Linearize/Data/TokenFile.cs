using System.Text.Json;

namespace Linearize.Data;

/// <summary>
/// Pre-tokenized training data: JSONL with <c>input_ids</c> and, optionally, <c>labels</c> (−100 where no loss is
/// taken; default: every token) and <c>distances</c> (recall files). Recognized by <see cref="IsTokenFile"/>: a
/// <c>.jsonl</c> file whose first record has <c>input_ids</c>.
/// </summary>
public static class TokenFile
{
    public static bool IsTokenFile(string path)
    {
        if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || !File.Exists(path))
            return false;
        using var reader = new StreamReader(path);
        string? first;
        while ((first = reader.ReadLine()) is not null && first.Trim().Length == 0)
        {
        }

        if (first is null)
            return false;
        try
        {
            using var doc = JsonDocument.Parse(first);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("input_ids", out _);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    public static IEnumerable<(TrainingExample Example, int[]? Distances)> Read(string path, bool requireDistances = false)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: data file not found");
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (text.Trim().Length == 0)
                continue;
            TrainingExample example;
            int[]? distances = null;
            try
            {
                using var doc = JsonDocument.Parse(text);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("input_ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
                    throw new LinearizeException($"{path}:{line}: a record needs an 'input_ids' array");
                var input = Ints(ids, path, line, "input_ids");
                var labels = root.TryGetProperty("labels", out var l) ? Ints(l, path, line, "labels") : input.ToArray();
                if (labels.Length != input.Length)
                    throw new LinearizeException($"{path}:{line}: 'labels' has {labels.Length} entries, 'input_ids' {input.Length}");
                if (root.TryGetProperty("distances", out var d))
                    distances = Ints(d, path, line, "distances");
                else if (requireDistances)
                    throw new LinearizeException($"{path}:{line}: not a recall file (no 'distances'); make one with 'linearize data recall'");
                if (input.Any(i => i < 0))
                    throw new LinearizeException($"{path}:{line}: negative token id in 'input_ids'");
                example = new TrainingExample(input, labels);
            }
            catch (JsonException e)
            {
                throw new LinearizeException($"{path}:{line}: {JsonErrorText.Describe(e)}");
            }

            yield return (example, distances);
        }
    }

    private static int[] Ints(JsonElement e, string path, int line, string field)
    {
        if (e.ValueKind != JsonValueKind.Array)
            throw new LinearizeException($"{path}:{line}: '{field}' must be an array of integers");
        var result = new int[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out result[i++]))
                throw new LinearizeException($"{path}:{line}: '{field}' must be an array of integers");
        }

        return result;
    }
}
