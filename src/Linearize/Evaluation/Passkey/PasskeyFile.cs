using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Linearize.Evaluation.Passkey;

/// <summary>
/// Passkey samples as JSONL, one sample per line (docs/EVALUATION.md §4): <c>length, depth, index, passkey,
/// needle_position, needle_depth, filler_start, filler_tokens, prompt_ids, answer_ids, prompt, answer</c>.
/// Written atomically; read back with every field checked.
/// </summary>
public static class PasskeyFile
{
    public static void Write(string path, IEnumerable<PasskeySample> samples) =>
        Checkpoints.AtomicFile.Write(path, stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            foreach (var s in samples)
                w.WriteLine(new JsonObject
                {
                    ["length"] = s.Length,
                    ["depth"] = s.Depth,
                    ["index"] = s.Index,
                    ["passkey"] = s.Passkey,
                    ["needle_position"] = s.NeedlePosition,
                    ["needle_depth"] = Math.Round(s.NeedleDepth, 4),
                    ["filler_start"] = s.FillerStart,
                    ["filler_tokens"] = s.FillerTokens,
                    ["prompt_ids"] = new JsonArray(s.PromptIds.Select(x => (JsonNode)x).ToArray()),
                    ["answer_ids"] = new JsonArray(s.AnswerIds.Select(x => (JsonNode)x).ToArray()),
                    ["prompt"] = s.Prompt,
                    ["answer"] = s.Answer,
                }.ToJsonString());
        });

    public static List<PasskeySample> Read(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: passkey file not found");
        var samples = new List<PasskeySample>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            string where = $"{path}:{lineNumber}";
            JsonObject o;
            try
            {
                o = JsonNode.Parse(line) as JsonObject ?? throw new LinearizeException($"{where}: not a JSON object");
            }
            catch (JsonException e)
            {
                throw new LinearizeException($"{where}: {JsonErrorText.Describe(e)}");
            }

            try
            {
                var s = new PasskeySample(
                    Int(o, "length"), o["depth"]!.GetValue<double>(), Int(o, "index"), o["passkey"]!.GetValue<string>(),
                    Int(o, "needle_position"), Int(o, "filler_start"), Int(o, "filler_tokens"),
                    Ints(o, "prompt_ids"), Ints(o, "answer_ids"), o["prompt"]!.GetValue<string>(), o["answer"]!.GetValue<string>());
                if (s.AnswerIds.Length == 0 || s.PromptIds.Length == 0)
                    throw new LinearizeException($"{where}: empty prompt_ids or answer_ids");
                if (s.PromptIds.Length + s.AnswerIds.Length != s.Length)
                    throw new LinearizeException($"{where}: length {s.Length} is not prompt_ids ({s.PromptIds.Length}) + answer_ids ({s.AnswerIds.Length})");
                samples.Add(s);
            }
            catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException or JsonException)
            {
                throw new LinearizeException($"{where}: not a passkey sample (needs length, depth, index, passkey, needle_position, filler_start, " +
                                             "filler_tokens, prompt_ids, answer_ids, prompt, answer; 'linearize data passkey' writes them)");
            }
        }

        if (samples.Count == 0)
            throw new LinearizeException($"{path}: no samples");
        return samples;
    }

    private static int Int(JsonObject o, string name) => o[name]!.GetValue<int>();

    private static int[] Ints(JsonObject o, string name) => o[name]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
}
