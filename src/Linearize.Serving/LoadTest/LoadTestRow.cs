namespace Linearize.Serving.LoadTest;

/// <summary>One batch size of a <see cref="ServeLoadTest"/>: throughput, latency, memory and the correctness counts.</summary>
public sealed record LoadTestRow(
    string Model,
    int MaxBatch,
    int Requests,
    double Seconds,
    double RequestsPerSecond,
    double TokensPerSecond,
    double LatencyP50Ms,
    double LatencyP99Ms,
    double FirstTokenP50Ms,
    long StateBytesPerSequence,
    int Mismatches,
    int Lost,
    int HealthChecks,
    int HealthFailures,
    double PrefillSeconds,
    double StepSeconds,
    long Steps);
