using System.Text.Json.Nodes;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// LAMBADA (OpenAI) (<c>tasks/lambada/lambada_openai.yaml</c>, output_type loglikelihood): context = every word but the
/// last (split on U+0020 only), target = <c>" " + last</c>; acc = the target is the greedy continuation, perplexity =
/// exp(−mean log-likelihood) over documents (per target word, not per token).
/// </summary>
public sealed class LambadaTask : EvalTask
{
    public override string Name => "lambada_openai";

    public override TaskOutputKind Kind => TaskOutputKind.Loglikelihood;

    public override IReadOnlyList<string> Files => new[] { "lambada/lambada_test.jsonl" };

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        RefuseFewshot(numFewshot);
        var result = new List<TaskDocument>();
        int i = 0;
        foreach (var line in ReadLines(RequireFile(dataDirectory, Files[0])))
        {
            if (result.Count == limit)
                break;
            string text = JsonNode.Parse(line)!["text"]!.GetValue<string>();
            int last = text.LastIndexOf(' ');
            var request = last < 0 ? new TaskRequest("", " " + text) : new TaskRequest(text[..last], " " + text[(last + 1)..]);
            result.Add(new TaskDocument(i++, new[] { request }, 0, new[] { request.Continuation }));
        }

        return result;
    }
}
