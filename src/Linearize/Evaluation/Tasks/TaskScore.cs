namespace Linearize.Evaluation.Tasks;

/// <summary>A task's (or group's) result: metrics over <see cref="Documents"/> documents, documents skipped because a
/// continuation cannot fit the model, the data note, subtasks (MMLU: categories and subjects) and the samples.</summary>
public sealed record TaskScore(string Task, int Documents, IReadOnlyList<MetricValue> Metrics, int Skipped, string? Note,
    IReadOnlyList<TaskScore> Subtasks, IReadOnlyList<SampleLog> Samples)
{
    public MetricValue? Metric(string name) => Metrics.FirstOrDefault(m => m.Name == name);
}
