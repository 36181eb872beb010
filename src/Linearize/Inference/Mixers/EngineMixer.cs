using Linearize.Caching;
using Linearize.Inference.Threading;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The decode-engine twin of a <see cref="Modeling.TokenMixer"/>: one token per sequence, from the raw q/k/v
/// projections in a <see cref="StepContext"/> to the attention output before <c>o_proj</c>, updating each sequence's
/// <see cref="LayerState"/>. It is itself the <see cref="RangeJob"/> it hands the worker pool (over its work units),
/// so a step allocates nothing.
/// </summary>
internal abstract class EngineMixer : RangeJob
{
    /// <summary>
    /// Decoding: how far ahead of the recurrent-state row being updated a step asks for the next rows
    /// (<c>prefetcht0</c> over that row's bytes, so each cache line once or, where a row ends mid-line, twice). The weights read between two visits of a layer evict its states, so
    /// every step reads them from memory, a few tens of KiB per head: runs too short for the hardware prefetcher to
    /// get ahead of (the softmax cache's reason too, <see cref="SoftmaxMixer.KvPrefetchBytes"/>).
    /// </summary>
    internal const int StatePrefetchBytes = 2048;

    /// <summary>
    /// Decoding: how many runs of consecutive (row, head) units each thread claims. A thread's run reads its heads'
    /// states (and their KV head's window, which a group's query heads share) as one contiguous stream, where units
    /// claimed one at a time alternated between threads, so every head began a cold stream and both threads missed on
    /// the same window; several runs per thread still let a thread that is descheduled hold up only its own run.
    /// </summary>
    private const int StepRunsPerThread = 4;

    protected EngineMixer(int heads, int kvHeads, int headDim)
    {
        Heads = heads;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Group = heads / kvHeads;
    }

    protected int Heads { get; }

    protected int KvHeads { get; }

    protected int HeadDim { get; }

    /// <summary>Query heads per KV head (repeat_kv: KV head j serves query heads j·G … j·G + G − 1).</summary>
    protected int Group { get; }

    /// <summary>Units per claimed run of a decoding step over <paramref name="units"/> (<see cref="StepRunsPerThread"/>).</summary>
    protected static int StepGrain(StepContext ctx, int units) => Math.Max(1, units / (ctx.Pool.Threads * StepRunsPerThread));

    public abstract LayerState CreateState();

    /// <summary>Runs this layer's mixer for every row of <paramref name="ctx"/> (layer <c>ctx.Layer</c>).</summary>
    public abstract void Step(StepContext ctx);

    /// <summary>Runs this layer's mixer over prefill segments (<see cref="StepContext.Prefill"/>): each row gets what a
    /// step at its position would give, and each sequence's state ends as if its rows had been stepped in order.</summary>
    public abstract void Prefill(StepContext ctx);

    /// <summary>Copies batch row <paramref name="row"/> of a TorchSharp layer cache into <paramref name="state"/>
    /// (the hand-over after a TorchSharp prefill of <paramref name="seen"/> tokens).</summary>
    public abstract void Import(LayerState state, ILayerCache? cache, int row, long seen);
}
