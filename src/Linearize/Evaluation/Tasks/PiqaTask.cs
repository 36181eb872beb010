using System.Text.Json.Nodes;

namespace Linearize.Evaluation.Tasks;

/// <summary>PIQA (<c>tasks/piqa/piqa.yaml</c>): <c>"Question: {goal}\nAnswer:"</c>, choices sol1 / sol2, acc and acc_norm.</summary>
public sealed class PiqaTask : EvalTask
{
    public override string Name => "piqa";

    public override TaskOutputKind Kind => TaskOutputKind.MultipleChoice;

    public override bool ReportsAccNorm => true;

    public override IReadOnlyList<string> Files => new[] { "piqa/valid.jsonl", "piqa/valid-labels.lst" };

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        RefuseFewshot(numFewshot);
        var docs = ReadLines(RequireFile(dataDirectory, Files[0])).ToList();
        var labels = ReadLines(RequireFile(dataDirectory, Files[1])).Select(l => int.Parse(l.Trim())).ToList();
        if (docs.Count != labels.Count)
            throw new LinearizeException($"{Path.Combine(dataDirectory, Files[0])}: {Plural.Of(docs.Count, "document")} but {labels.Count} labels");
        var result = new List<TaskDocument>();
        for (int i = 0; i < docs.Count && result.Count != limit; i++)
        {
            var j = JsonNode.Parse(docs[i])!;
            string[] choices = { j["sol1"]!.GetValue<string>(), j["sol2"]!.GetValue<string>() };
            result.Add(new TaskDocument(i, Choices($"Question: {j["goal"]!.GetValue<string>()}\nAnswer:", choices), labels[i], choices));
        }

        return result;
    }
}
