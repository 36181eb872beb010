namespace Linearize.Caching;

/// <summary>The decoding state one layer keeps between calls (a KV cache, a recurrent state, a window buffer).</summary>
public interface ILayerCache : IDisposable
{
    /// <summary>Bytes of tensor state this layer holds for decoding (what grows, or does not, with the context).</summary>
    long StateBytes { get; }
}
