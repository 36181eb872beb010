using Prometheus;

namespace Linearize.Serving;

/// <summary>
/// The server's Prometheus metrics (prometheus-net), in a registry of its own so that several servers in one process
/// (tests, benchmarks) never share counters. Exposed as Prometheus text at <c>GET /metrics</c>.
/// </summary>
public sealed class ServerMetrics
{
    public ServerMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        Requests = f.CreateCounter("linearize_requests_total", "HTTP requests answered, by endpoint and status code",
            new CounterConfiguration { LabelNames = new[] { "endpoint", "status" } });
        PromptTokens = f.CreateCounter("linearize_prompt_tokens_total", "Prompt tokens prefilled");
        GeneratedTokens = f.CreateCounter("linearize_generated_tokens_total", "Tokens generated");
        Disconnected = f.CreateCounter("linearize_disconnected_requests_total", "Requests whose client went away before the end");
        PrefillSeconds = f.CreateCounter("linearize_prefill_seconds_total", "Time the scheduler spent prefilling prompts (engine, in slices between decode steps)");
        StepSeconds = f.CreateCounter("linearize_decode_step_seconds_total", "Time the scheduler spent in batched decode steps (engine)");
        Steps = f.CreateCounter("linearize_decode_steps_total", "Batched decode steps");
        QueueDepth = f.CreateGauge("linearize_queue_depth", "Requests waiting for a batch slot");
        ActiveSequences = f.CreateGauge("linearize_active_sequences", "Sequences in the running decode batch");
        StateBytes = f.CreateGauge("linearize_state_bytes", "Bytes of decoding state held by the active sequences (KV caches, recurrent states)");
        Latency = f.CreateHistogram("linearize_request_duration_seconds", "Time from accepting a generation request to its last token",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 16) });
    }

    public CollectorRegistry Registry { get; }

    public Counter Requests { get; }

    public Counter PromptTokens { get; }

    public Counter GeneratedTokens { get; }

    public Counter Disconnected { get; }

    public Counter PrefillSeconds { get; }

    public Counter StepSeconds { get; }

    public Counter Steps { get; }

    public Gauge QueueDepth { get; }

    public Gauge ActiveSequences { get; }

    public Gauge StateBytes { get; }

    public Histogram Latency { get; }
}
