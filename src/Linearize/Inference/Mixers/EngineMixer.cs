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
