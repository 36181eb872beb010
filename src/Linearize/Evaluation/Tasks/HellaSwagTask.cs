namespace Linearize.Evaluation.Tasks;

/// <summary>
/// HellaSwag from the llama.cpp text format (6 lines per item: context, gold index, 4 endings). The text is scored as
/// given (docs/EVALUATION.md §3: it is not lm-eval's <c>process_docs</c> output and cannot be turned back into it — the case of
/// <c>ctx_b</c>'s first letter differs), with lm-eval's request and metric rules: continuation <c>" " + ending</c>,
/// acc and acc_norm.
/// </summary>
public sealed class HellaSwagTask : EvalTask
{
    public override string Name => "hellaswag";

    public override TaskOutputKind Kind => TaskOutputKind.MultipleChoice;

    public override bool ReportsAccNorm => true;

    public override IReadOnlyList<string> Files => new[] { "hellaswag/hellaswag_val_full.txt" };

    public override string Note => "contexts as in the llama.cpp text file (no ctx_b.capitalize(), WikiHow tags only), not lm-eval's preprocess";

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        RefuseFewshot(numFewshot);
        string path = RequireFile(dataDirectory, Files[0]);
        var lines = File.ReadAllLines(path);
        if (lines.Length % 6 != 0)
            throw new LinearizeException($"{path}: {Plural.Of(lines.Length, "line")} is not a multiple of 6 (context, gold, 4 endings)");
        var result = new List<TaskDocument>();
        for (int i = 0; i * 6 < lines.Length && result.Count != limit; i++)
        {
            var item = lines.AsSpan(i * 6, 6);
            if (!int.TryParse(item[1].Trim(), out int gold) || gold is < 0 or > 3)
                throw new LinearizeException($"{path}:{i * 6 + 2}: gold index '{item[1]}' is not 0..3");
            var endings = item[2..].ToArray();
            result.Add(new TaskDocument(i, Choices(item[0], endings), gold, endings));
        }

        return result;
    }
}
