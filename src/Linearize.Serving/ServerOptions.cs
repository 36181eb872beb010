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

    /// <summary>Prompts up to this many tokens are prefilled inside the decode batch (one engine row per token per
    /// step); longer ones by a TorchSharp forward pass before they join. 0: always TorchSharp. The choice depends on
    /// the prompt's length only, so a request's output never depends on its neighbours.</summary>
    public int EnginePrefillMaxTokens { get; init; } = 32;

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
        if (EnginePrefillMaxTokens < 0)
            throw new LinearizeException($"--engine-prefill-max must be at least 0, got {EnginePrefillMaxTokens}");
        if (ShutdownTimeout < TimeSpan.Zero || ShutdownTimeout > TimeSpan.FromDays(1))
            throw new LinearizeException($"--shutdown-timeout must be in [0, 86400] seconds, got {ShutdownTimeout.TotalSeconds}");
        if (DefaultChatMaxTokens < 1)
            throw new LinearizeException($"default max tokens must be at least 1, got {DefaultChatMaxTokens}");
    }
}
