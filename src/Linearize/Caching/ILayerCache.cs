using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>The decoding state one layer keeps between calls (a KV cache, a recurrent state, a window buffer).</summary>
public interface ILayerCache : IDisposable
{
    /// <summary>Bytes of tensor state this layer holds for decoding (what grows, or does not, with the context).</summary>
    long StateBytes { get; }

    /// <summary>A new cache whose batch row i is this cache's row <c>rows[i]</c> (<c>index_select</c> on the batch
    /// dimension): one context's state shared by several continuations, as the task evaluator scores them.</summary>
    ILayerCache SelectRows(Tensor rows);
}
