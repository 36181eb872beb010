using System.Text.Json;

namespace Linearize.Tests.Fixtures;

public static class Jsonl
{
    public static IEnumerable<JsonElement> Read(string path) =>
        File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Select(l => JsonDocument.Parse(l).RootElement.Clone());

    public static int[] Ints(this JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
