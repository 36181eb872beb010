namespace Linearize.Evaluation.Tasks;

/// <summary>
/// One evaluation document: its requests (one per choice, or one for a log-likelihood task), the gold choice, and the
/// raw choice strings whose character counts <c>acc_norm</c> divides by (docs/EVALUATION.md §1: code points of the choice,
/// without the delimiter). <paramref name="Subject"/> names an MMLU subject.
/// </summary>
public sealed record TaskDocument(int Index, IReadOnlyList<TaskRequest> Requests, int Gold, IReadOnlyList<string> Choices, string? Subject = null);
