namespace Linearize.Evaluation.Tasks;

/// <summary>One document's record for <c>--log-samples</c> (lm-eval's <c>--log_samples</c>): its requests' log-likelihoods
/// and greediness, the gold index and the per-document metrics.</summary>
public sealed record SampleLog(int DocId, string? Subject, int Gold, IReadOnlyList<TaskRequest> Requests, IReadOnlyList<RequestScore> Scores,
    IReadOnlyDictionary<string, double> Metrics);
