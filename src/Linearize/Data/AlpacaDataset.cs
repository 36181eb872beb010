using System.Text.Json;
using Linearize.Tokenization;

namespace Linearize.Data;

/// <summary>
/// Alpaca-format instruction data (JSON array or JSONL of <c>{instruction, input, output}</c>) rendered with the
/// Stanford Alpaca prompt template; the loss is masked on the prompt (labels −100) and EOS is appended, as in
/// tatsu-lab/stanford_alpaca <c>train.py</c> (<c>preprocess</c>: tokenize source and source+target, mask the source).
/// </summary>
public static class AlpacaDataset
{
    public const string PromptWithInput =
        "Below is an instruction that describes a task, paired with an input that provides further context. " +
        "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";

    public const string PromptWithoutInput =
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
        "### Instruction:\n{instruction}\n\n### Response:\n";

    public sealed record Record(string Instruction, string Input, string Output);

    /// <summary>True for <c>.json</c>/<c>.jsonl</c> files.</summary>
    public static bool IsAlpacaPath(string path) =>
        path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);

    /// <summary>Reads the records. A malformed record is an error naming the file and line, unless
    /// <paramref name="skipBad"/>, in which case it is counted in <c>Skipped</c>.</summary>
    public static (List<Record> Records, int Skipped) Read(string path, bool skipBad)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: data file not found");
        string text = File.ReadAllText(path);
        var records = new List<Record>();
        int skipped = 0;
        void Bad(string where, string problem)
        {
            if (!skipBad)
                throw new LinearizeException($"{path}:{where}: {problem} (use --skip-bad-records to skip such records)");
            skipped++;
        }

        if (text.TrimStart().StartsWith('['))
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(text);
            }
            catch (JsonException e)
            {
                throw new LinearizeException($"{path}: not valid JSON ({JsonErrorText.Describe(e)})");
            }

            using var _ = doc;
            int i = 0;
            foreach (var element in doc.RootElement.EnumerateArray())
            {
                i++;
                var (record, problem) = Parse(element);
                if (record is null)
                    Bad($"record {i}", problem!);
                else
                    records.Add(record);
            }
        }
        else
        {
            int line = 0;
            foreach (var raw in text.Split('\n'))
            {
                line++;
                if (raw.Trim().Length == 0)
                    continue;
                try
                {
                    using var doc = JsonDocument.Parse(raw);
                    var (record, problem) = Parse(doc.RootElement);
                    if (record is null)
                        Bad(line.ToString(), problem!);
                    else
                        records.Add(record);
                }
                catch (JsonException e)
                {
                    Bad(line.ToString(), $"not valid JSON ({JsonErrorText.Describe(e)})");
                }
            }
        }

        if (records.Count == 0)
            throw new LinearizeException($"{path}: no usable records");
        return (records, skipped);
    }

    private static (Record?, string?) Parse(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object)
            return (null, "record is not a JSON object");
        string? Field(string name) =>
            e.TryGetProperty(name, out var v) ? v.ValueKind == JsonValueKind.String ? v.GetString() : null : "";
        string? instruction = Field("instruction"), input = Field("input"), output = Field("output");
        if (instruction is null || input is null || output is null)
            return (null, "instruction, input and output must be strings");
        if (instruction.Length == 0)
            return (null, "missing or empty 'instruction'");
        if (output.Length == 0)
            return (null, "missing or empty 'output'");
        return (new Record(instruction, input, output), null);
    }

    public static string Prompt(Record r) => (r.Input.Length > 0 ? PromptWithInput : PromptWithoutInput)
        .Replace("{instruction}", r.Instruction).Replace("{input}", r.Input);

    /// <summary>BOS + prompt + response + EOS, with labels −100 on BOS and the prompt.</summary>
    public static TrainingExample Tokenize(Record r, TextTokenizer tokenizer)
    {
        string prompt = Prompt(r);
        var promptIds = tokenizer.Encode(prompt, addBos: true);
        var ids = tokenizer.Encode(prompt + r.Output, addBos: true).ToList();
        if (tokenizer.EosId is int eos)
            ids.Add(eos);
        var labels = ids.ToArray();
        for (int i = 0; i < Math.Min(promptIds.Count, labels.Length); i++)
            labels[i] = TrainingExample.IgnoreIndex;
        return new TrainingExample(ids.ToArray(), labels);
    }
}
