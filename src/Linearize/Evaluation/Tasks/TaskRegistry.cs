namespace Linearize.Evaluation.Tasks;

/// <summary>The tasks <c>eval tasks</c> knows, by lm-eval's names.</summary>
public static class TaskRegistry
{
    public static readonly string[] Names = { "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "lambada_openai", "mmlu" };

    public static EvalTask Create(string name) => name switch
    {
        "piqa" => new PiqaTask(),
        "arc_easy" => new ArcTask(challenge: false),
        "arc_challenge" => new ArcTask(challenge: true),
        "hellaswag" => new HellaSwagTask(),
        "winogrande" => new WinoGrandeTask(),
        "lambada_openai" => new LambadaTask(),
        "mmlu" => new MmluTask(),
        _ => throw new LinearizeException($"unknown task '{name}' (known: {string.Join(", ", Names)})"),
    };

    /// <summary>Parses <c>"piqa,arc_easy"</c>.</summary>
    public static IReadOnlyList<EvalTask> Parse(string list)
    {
        var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct().ToList();
        if (names.Count == 0)
            throw new LinearizeException("--tasks: no task named");
        return names.Select(Create).ToList();
    }
}
