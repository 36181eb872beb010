using System.Text.Json;
using System.Text.Json.Nodes;

namespace Linearize.Data;

/// <summary>
/// Seeded MQAR sequences (<see cref="RecallTaskOptions"/>) and their file format: JSONL, one
/// <c>{"input_ids": […], "labels": […], "distances": […]}</c> per line, labels −100 except at answers — the token
/// file <c>train</c> reads directly (<see cref="TokenFile"/>) and <c>eval recall</c> scores.
/// </summary>
public static class RecallGenerator
{
    public static RecallExample Generate(RecallTaskOptions o, Random rng)
    {
        var tokens = new int[o.SequenceLength];
        var keys = Enumerable.Range(1, o.Keys).OrderBy(_ => rng.Next()).Take(o.Pairs).ToArray();
        var values = keys.Select(_ => 1 + o.Keys + rng.Next(o.Values)).ToArray();
        for (int i = 0; i < o.Pairs; i++)
        {
            tokens[2 * i] = keys[i];
            tokens[2 * i + 1] = values[i];
        }

        // Query slots: non-overlapping pairs of positions after the pairs and the gap, chosen uniformly.
        int first = 2 * o.Pairs + o.MinGap;
        int slots = (o.SequenceLength - first) / 2;
        var chosen = Enumerable.Range(0, slots).OrderBy(_ => rng.Next()).Take(o.Queries).Order().ToArray();
        var positions = new int[o.Queries];
        var distances = new int[o.Queries];
        // Each key is queried once while there are keys left, so an answer cannot be copied from an earlier query of
        // the same key; beyond that, the distance is to the nearest earlier statement of the pair (pair or query) —
        // the distance a model must actually reach back.
        var order = Enumerable.Range(0, o.Pairs).OrderBy(_ => rng.Next()).ToArray();
        var lastSeen = Enumerable.Range(0, o.Pairs).Select(i => 2 * i).ToArray();
        for (int q = 0; q < o.Queries; q++)
        {
            int pair = q < o.Pairs ? order[q] : rng.Next(o.Pairs);
            int at = first + 2 * chosen[q];
            tokens[at] = keys[pair];
            tokens[at + 1] = values[pair];
            positions[q] = at;
            distances[q] = at - lastSeen[pair];
            lastSeen[pair] = at;
        }

        return new RecallExample(tokens, positions, distances);
    }

    public static List<RecallExample> Generate(RecallTaskOptions o, int count, int seed)
    {
        o.Validate();
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => Generate(o, rng)).ToList();
    }

    /// <summary>The training example: labels only at the values after query keys.</summary>
    public static TrainingExample ToTraining(RecallExample e)
    {
        var labels = Enumerable.Repeat(TrainingExample.IgnoreIndex, e.Tokens.Length).ToArray();
        foreach (int p in e.QueryPositions)
            labels[p + 1] = e.Tokens[p + 1];
        return new TrainingExample(e.Tokens, labels);
    }

    public static void Write(string path, IEnumerable<RecallExample> examples, RecallTaskOptions o)
    {
        Checkpoints.AtomicFile.Write(path, stream =>
        {
            using var w = new StreamWriter(stream, new System.Text.UTF8Encoding(false), 1 << 16, leaveOpen: true);
            foreach (var e in examples)
            {
                var t = ToTraining(e);
                w.WriteLine(new JsonObject
                {
                    ["input_ids"] = new JsonArray(t.InputIds.Select(x => (JsonNode)x).ToArray()),
                    ["labels"] = new JsonArray(t.Labels.Select(x => (JsonNode)x).ToArray()),
                    ["distances"] = new JsonArray(e.Distances.Select(x => (JsonNode)x).ToArray()),
                }.ToJsonString());
            }
        });
        Checkpoints.AtomicFile.WriteAllText(path + ".task.json", JsonSerializer.Serialize(o, new JsonSerializerOptions
        {
            WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        }));
    }

    /// <summary>Reads a recall file back (the query positions are where labels are set, less one).</summary>
    public static List<RecallExample> Read(string path)
    {
        var result = new List<RecallExample>();
        foreach (var (t, distances) in TokenFile.Read(path, requireDistances: true))
        {
            var positions = Enumerable.Range(1, t.Labels.Length - 1).Where(i => t.Labels[i] != TrainingExample.IgnoreIndex).Select(i => i - 1).ToArray();
            if (distances!.Length != positions.Length)
                throw new LinearizeException($"{path}: a record has {positions.Length} answers but {distances.Length} distances");
            result.Add(new RecallExample(t.InputIds, positions, distances));
        }

        return result;
    }
}
