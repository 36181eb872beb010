using Linearize.Evaluation.Recall;

namespace Linearize.Workflows;

/// <summary>One model of the lab at one stage (<c>teacher</c>, <c>converted</c>, <c>recovered</c>): its recall, the
/// decoding state it holds per sequence at the task's length, and the training it took to get there.</summary>
public sealed record RecallLabRow(string Method, string Stage, long StateBytes, RecallResult Recall, long TrainSteps, double TrainSeconds);

/// <summary>What <see cref="RecallLab.Run"/> measured; null rows mean an interrupted run.</summary>
public sealed record RecallLabResult(RecallLabOptions Options, IReadOnlyList<RecallLabRow> Rows, double Seconds, bool Completed);
