using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// The decoding state of a whole model: one <see cref="ILayerCache"/> per layer (created lazily by the layer's
/// mixer, so softmax layers get a KV cache and linear layers a recurrent state) and the number of tokens seen.
/// </summary>
public sealed class ModelCache : IDisposable
{
    private readonly ILayerCache?[] _layers;

    public ModelCache(int layerCount) => _layers = new ILayerCache?[layerCount];

    /// <summary>Tokens already processed (the position of the next token).</summary>
    public long SeenTokens { get; private set; }

    public int LayerCount => _layers.Length;

    public ILayerCache? this[int layer] => _layers[layer];

    public T GetOrCreate<T>(int layer, Func<T> create) where T : class, ILayerCache
    {
        if (_layers[layer] is T existing)
            return existing;
        if (_layers[layer] is not null)
            throw new InvalidOperationException($"layer {layer} holds a {_layers[layer]!.GetType().Name}, not a {typeof(T).Name}");
        var made = create();
        _layers[layer] = made;
        return made;
    }

    /// <summary>Called by the model after every layer has consumed <paramref name="tokens"/> new positions.</summary>
    public void Advance(long tokens) => SeenTokens += tokens;

    /// <summary>A new cache whose batch row i is row <c>rows[i]</c> of this one, in every layer (<c>rows</c> int64 <c>[N]</c>).</summary>
    public ModelCache SelectRows(Tensor rows)
    {
        var copy = new ModelCache(_layers.Length) { SeenTokens = SeenTokens };
        for (int i = 0; i < _layers.Length; i++)
            copy._layers[i] = _layers[i]?.SelectRows(rows);
        return copy;
    }

    /// <summary>Total bytes of decoding state held by all layers.</summary>
    public long StateBytes => _layers.Sum(l => l?.StateBytes ?? 0);

    public void Dispose()
    {
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i]?.Dispose();
            _layers[i] = null;
        }

        SeenTokens = 0;
    }
}
