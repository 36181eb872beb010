namespace Linearize.Serving;

/// <summary>How <see cref="LinearizeServer"/> listens and batches.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to bind; loopback by default so a server is never exposed by accident.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="LinearizeServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Sequences decoded together in one engine step.</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>Requests waiting for a slot; one more is answered 429.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary><c>max_tokens</c> when a request gives none: 16 for completions (OpenAI's default), this for chat.</summary>
    public int DefaultChatMaxTokens { get; init; } = 256;

    /// <summary>Prompt tokens prefilled per scheduler iteration, between two decode steps of the running batch (chunked
    /// prefill): a long prompt delays the others' next token by one slice, never by the whole prompt. How a prompt is
    /// sliced does not change its arithmetic (the engine's prefill is bit-identical however it is cut).</summary>
    public int PrefillSliceTokens { get; init; } = 256;

    /// <summary>Longest prompt accepted (400 beyond it). Null: the model's context for a model with softmax layers,
    /// <see cref="LinearModelPromptTokens"/> for a fully linear one.</summary>
    public int? MaxPromptTokens { get; init; }

    /// <summary>The default prompt bound of a fully linear model: its state does not grow, but prefill time does.</summary>
    public const int LinearModelPromptTokens = 65536;

    /// <summary>Largest request body accepted.</summary>
    public long MaxRequestBytes { get; init; } = 4 << 20;

    /// <summary>How long a shutdown lets requests in flight finish before it ends them (<see cref="LinearizeServer.ShutdownAsync"/>).</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public void Validate()
    {
        if (Port is < 0 or > 65535)
            throw new LinearizeException($"--port must be in [0, 65535], got {Port}");
        if (MaxBatch < 1)
            throw new LinearizeException($"--max-batch must be at least 1, got {MaxBatch}");
        if (MaxQueue < 0)
            throw new LinearizeException($"--max-queue must be at least 0, got {MaxQueue}");
        if (PrefillSliceTokens < 1)
            throw new LinearizeException($"--prefill-slice must be at least 1, got {PrefillSliceTokens}");
        if (MaxPromptTokens is < 1)
            throw new LinearizeException($"--max-prompt-tokens must be at least 1, got {MaxPromptTokens}");
        if (ShutdownTimeout < TimeSpan.Zero || ShutdownTimeout > TimeSpan.FromDays(1))
            throw new LinearizeException($"--shutdown-timeout must be in [0, 86400] seconds, got {ShutdownTimeout.TotalSeconds}");
        if (DefaultChatMaxTokens < 1)
            throw new LinearizeException($"default max tokens must be at least 1, got {DefaultChatMaxTokens}");
    }
}
