namespace Linearize.Evaluation.Tasks;

/// <summary>
/// A zero-/few-shot task with lm-evaluation-harness's rules (docs/EVALUATION.md): how its documents become requests, which
/// metrics it reports. Documents are read from the shared data files, which differ from lm-eval's in ways docs/EVALUATION.md §3
/// states and each task undoes where it can.
/// </summary>
public abstract class EvalTask
{
    /// <summary>lm-eval's task name, e.g. <c>arc_easy</c>.</summary>
    public abstract string Name { get; }

    public abstract TaskOutputKind Kind { get; }

    /// <summary>Whether <c>acc_norm</c> is in the task's metric list (piqa, arc, hellaswag).</summary>
    public virtual bool ReportsAccNorm => false;

    /// <summary>Shots used when none are asked for (all here: 0).</summary>
    public virtual int DefaultFewshot => 0;

    /// <summary>Files under the data directory the task reads (for the "missing file" error).</summary>
    public abstract IReadOnlyList<string> Files { get; }

    /// <summary>The documents, in dataset order, at most <paramref name="limit"/> (per subject for MMLU).</summary>
    public abstract IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit);

    /// <summary>What the run's output should say about how the shared file maps to lm-eval's documents.</summary>
    public virtual string? Note => null;

    protected string RequireFile(string dataDirectory, string relative)
    {
        string path = Path.Combine(dataDirectory, relative);
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: not found (task {Name} reads it; set --data-dir or LINEARIZE_SHARED)");
        return path;
    }

    protected void RefuseFewshot(int numFewshot)
    {
        if (numFewshot != 0)
            throw new LinearizeException($"--num-fewshot {numFewshot}: task {Name} has no few-shot split here (only mmlu does); use 0");
    }

    /// <summary>Multiple-choice requests <c>(context, " " + choice)</c> (target_delimiter " ").</summary>
    protected static List<TaskRequest> Choices(string context, IEnumerable<string> choices) =>
        choices.Select(c => new TaskRequest(context, " " + c)).ToList();

    protected static IEnumerable<string> ReadLines(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0);
}
