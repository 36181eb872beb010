using System.Diagnostics;
using System.Threading.Channels;
using Linearize.Generation;

namespace Linearize.Serving;

/// <summary>A piece of a streamed reply; the last one has a <see cref="FinishReason"/> (<c>stop</c> or <c>length</c>).</summary>
public readonly record struct GenerationEvent(string Text, string? FinishReason);

/// <summary>
/// One request in the <see cref="BatchScheduler"/>: its prompt ids and sampling, and a channel the scheduler writes
/// text pieces to as tokens are produced. Cancelling <see cref="Cancellation"/> (the client went away) frees its slot
/// at the next step.
/// </summary>
public sealed class GenerationRequest
{
    private readonly Channel<GenerationEvent> _events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public GenerationRequest(IReadOnlyList<int> promptIds, int maxTokens, SamplingOptions sampling, IReadOnlyList<string> stop,
        CancellationToken cancellation)
    {
        PromptIds = promptIds;
        MaxTokens = maxTokens;
        Sampling = sampling;
        Stop = stop;
        Cancellation = cancellation;
    }

    public IReadOnlyList<int> PromptIds { get; }

    public int MaxTokens { get; }

    public SamplingOptions Sampling { get; }

    public IReadOnlyList<string> Stop { get; }

    public CancellationToken Cancellation { get; }

    public ChannelReader<GenerationEvent> Events => _events.Reader;

    internal ChannelWriter<GenerationEvent> Writer => _events.Writer;

    /// <summary>Tokens produced so far (stop tokens not counted).</summary>
    public int CompletionTokens { get; internal set; }

    /// <summary>When the request was accepted, for latency metrics.</summary>
    public long StartTimestamp { get; } = Stopwatch.GetTimestamp();
}
