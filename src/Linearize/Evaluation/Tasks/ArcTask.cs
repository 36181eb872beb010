using System.Text.Json.Nodes;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// ARC-Easy / ARC-Challenge (<c>tasks/arc/arc_easy.yaml</c>): <c>"Question: {question}\nAnswer:"</c>, the answer texts
/// as choices, acc and acc_norm. The shared llmfoundry files pad 3-choice items with a copy of a wrong choice at index 0
/// (docs/EVALUATION.md §3); those are restored to 3 choices (drop index 0, gold − 1).
/// </summary>
public sealed class ArcTask(bool challenge) : EvalTask
{
    public override string Name => challenge ? "arc_challenge" : "arc_easy";

    public override TaskOutputKind Kind => TaskOutputKind.MultipleChoice;

    public override bool ReportsAccNorm => true;

    public override IReadOnlyList<string> Files => new[] { challenge ? "arc/arc_challenge.llmfoundry.jsonl" : "arc/arc_easy.llmfoundry.jsonl" };

    /// <summary>Documents restored from 4 padded choices to their original 3 in the last <see cref="Load"/>.</summary>
    public int Depadded { get; private set; }

    public override string Note =>
        $"{Depadded} 3-choice items restored from the file's padding (a repeated wrong choice at index 0); 5-choice items cut to 4 in the file cannot be restored";

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        RefuseFewshot(numFewshot);
        Depadded = 0;
        var result = new List<TaskDocument>();
        int i = 0;
        foreach (var line in ReadLines(RequireFile(dataDirectory, Files[0])))
        {
            if (result.Count == limit)
                break;
            var j = JsonNode.Parse(line)!;
            string query = j["query"]!.GetValue<string>(); // "Question: " + question
            var choices = j["choices"]!.AsArray().Select(c => c!.GetValue<string>()).ToList();
            int gold = j["gold"]!.GetValue<int>();
            if (choices.Count == 4 && choices.Skip(1).Contains(choices[0]))
            {
                choices.RemoveAt(0);
                gold--;
                Depadded++;
            }

            result.Add(new TaskDocument(i++, Choices(query + "\nAnswer:", choices), gold, choices));
        }

        return result;
    }
}
