using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// A growing key/value cache for one softmax-attention layer. Keys and values are stored post-RoPE as
/// <c>[B, H_kv, S, D]</c> in a buffer whose capacity doubles, so appending a token costs O(1) amortised copies.
/// </summary>
public sealed class KvCache : ILayerCache
{
    private Tensor? _keys;
    private Tensor? _values;

    /// <summary>Number of cached positions.</summary>
    public long Length { get; private set; }

    public long Capacity => _keys?.shape[2] ?? 0;

    public long StateBytes => _keys is null ? 0 : 2 * Length * (_keys.numel() / _keys.shape[2]) * _keys.element_size();

    /// <summary>Appends <paramref name="keys"/>/<paramref name="values"/> <c>[B, H_kv, T, D]</c>; returns views of all cached
    /// positions <c>[B, H_kv, Length, D]</c> (valid until the next append).</summary>
    public (Tensor Keys, Tensor Values) Append(Tensor keys, Tensor values)
    {
        long t = keys.shape[2];
        long needed = Length + t;
        if (_keys is null || needed > Capacity)
        {
            long capacity = Math.Max(needed, Math.Max(16, Capacity * 2));
            _keys = Grow(_keys, keys, capacity);
            _values = Grow(_values, values, capacity);
        }

        using (no_grad())
        {
            _keys.narrow(2, Length, t).copy_(keys);
            _values!.narrow(2, Length, t).copy_(values);
        }

        Length = needed;
        return (_keys.narrow(2, 0, Length), _values.narrow(2, 0, Length));
    }

    /// <summary>Views of the cached keys and values <c>[B, H_kv, Length, D]</c> (empty before the first append).</summary>
    public (Tensor Keys, Tensor Values) Read() =>
        _keys is null ? (empty(0), empty(0)) : (_keys.narrow(2, 0, Length), _values!.narrow(2, 0, Length));

    private Tensor Grow(Tensor? old, Tensor like, long capacity)
    {
        var shape = (long[])like.shape.Clone();
        shape[2] = capacity;
        var fresh = zeros(shape, like.dtype, like.device).DetachFromDisposeScope();
        if (old is not null)
        {
            using (no_grad())
                fresh.narrow(2, 0, Length).copy_(old.narrow(2, 0, Length));
            old.Dispose();
        }

        return fresh;
    }

    public ILayerCache SelectRows(Tensor rows)
    {
        var copy = new KvCache();
        if (_keys is null)
            return copy;
        using var noGrad = no_grad();
        copy._keys = _keys.narrow(2, 0, Length).index_select(0, rows).DetachFromDisposeScope();
        copy._values = _values!.narrow(2, 0, Length).index_select(0, rows).DetachFromDisposeScope();
        copy.Length = Length;
        return copy;
    }

    public void Dispose()
    {
        _keys?.Dispose();
        _values?.Dispose();
        _keys = _values = null;
        Length = 0;
    }
}
