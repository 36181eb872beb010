using System.Text.Json.Nodes;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// WinoGrande (<c>tasks/winogrande/default.yaml</c>, partial scoring): the two choices are <i>contexts</i>,
/// <c>sentence[:i] + option</c> with <c>i = sentence.index("_")</c>, and the scored continuation is
/// <c>" " + sentence[i+1:].strip()</c>; acc only.
/// </summary>
public sealed class WinoGrandeTask : EvalTask
{
    public override string Name => "winogrande";

    public override TaskOutputKind Kind => TaskOutputKind.MultipleChoice;

    public override IReadOnlyList<string> Files => new[] { "winogrande/dev.jsonl" };

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        RefuseFewshot(numFewshot);
        string path = RequireFile(dataDirectory, Files[0]);
        var result = new List<TaskDocument>();
        int n = 0;
        foreach (var line in ReadLines(path))
        {
            if (result.Count == limit)
                break;
            var j = JsonNode.Parse(line)!;
            string sentence = j["sentence"]!.GetValue<string>();
            int blank = sentence.IndexOf('_');
            if (blank < 0)
                throw new LinearizeException($"{path}: item {n} has no '_' in its sentence");
            string[] options = { j["option1"]!.GetValue<string>(), j["option2"]!.GetValue<string>() };
            string target = " " + sentence[(blank + 1)..].Trim();
            var requests = options.Select(o => new TaskRequest(sentence[..blank] + o, target)).ToList();
            int gold = j["answer"]!.GetValue<string>() switch { "1" => 0, "2" => 1, var a => throw new LinearizeException($"{path}: item {n} answer '{a}'") };
            result.Add(new TaskDocument(n++, requests, gold, requests.Select(r => r.Context).ToList()));
        }

        return result;
    }
}
