using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// The decoding cache of a sliding-window softmax branch: a ring buffer of the last <c>capacity</c> post-RoPE keys and
/// values (slot = sequence index mod capacity; softmax over a set of keys does not depend on their order), with each
/// slot's absolute position and validity, plus the first <c>sinks</c> entries of the sequence kept for good.
/// Memory is fixed at creation: it does not grow with the context.
/// Keys/values <c>[B, H_kv, capacity, D]</c>, positions <c>[B, capacity]</c> int64, valid <c>[B, capacity]</c> bool.
/// </summary>
public sealed class WindowKvCache : IDisposable
{
    private readonly int _capacity;
    private readonly int _sinks;
    private Tensor? _keys, _values, _positions, _valid;
    private Tensor? _sinkKeys, _sinkValues, _sinkPositions, _sinkValid;

    public WindowKvCache(int capacity, int sinks)
    {
        _capacity = capacity;
        _sinks = sinks;
    }

    /// <summary>Entries written so far (sequence index of the next entry).</summary>
    public long Written { get; private set; }

    public long StateBytes =>
        (_keys is null ? 0 : 2 * _keys.numel() * _keys.element_size() + _positions!.numel() * 8 + _valid!.numel()) +
        (_sinkKeys is null ? 0 : 2 * _sinkKeys.numel() * _sinkKeys.element_size() + _sinkPositions!.numel() * 8 + _sinkValid!.numel());

    /// <summary>The cached entries visible as context: keys, values <c>[B, H_kv, L, D]</c>, positions <c>[B, L]</c>,
    /// valid <c>[B, L]</c>; null before anything was written.</summary>
    public (Tensor Keys, Tensor Values, Tensor Positions, Tensor Valid)? Context()
    {
        if (_keys is null)
            return null;
        if (_sinkKeys is null)
            return (_keys, _values!, _positions!, _valid!);
        // A ring entry at a sink position is also in the sink buffer: count it once.
        var ringValid = _valid!.logical_and(_positions!.Ge(_sinks));
        return (cat(new[] { _sinkKeys, _keys }, 2), cat(new[] { _sinkValues!, _values! }, 2),
            cat(new[] { _sinkPositions!, _positions! }, 1), cat(new[] { _sinkValid!, ringValid }, 1));
    }

    /// <summary>Records new entries <c>keys, values [B, H_kv, T, D]</c> at <c>positions [B, T]</c>, valid <c>[B, T]</c>.</summary>
    public void Append(Tensor keys, Tensor values, Tensor positions, Tensor valid)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long b = keys.shape[0], hkv = keys.shape[1], t = keys.shape[2], d = keys.shape[3];
        if (_keys is null)
        {
            _keys = zeros(new long[] { b, hkv, _capacity, d }, keys.dtype, keys.device).DetachFromDisposeScope();
            _values = zeros(new long[] { b, hkv, _capacity, d }, values.dtype, values.device).DetachFromDisposeScope();
            _positions = zeros(new long[] { b, _capacity }, ScalarType.Int64, keys.device).DetachFromDisposeScope();
            _valid = zeros(new long[] { b, _capacity }, ScalarType.Bool, keys.device).DetachFromDisposeScope();
            if (_sinks > 0)
            {
                _sinkKeys = zeros(new long[] { b, hkv, _sinks, d }, keys.dtype, keys.device).DetachFromDisposeScope();
                _sinkValues = zeros(new long[] { b, hkv, _sinks, d }, values.dtype, values.device).DetachFromDisposeScope();
                _sinkPositions = zeros(new long[] { b, _sinks }, ScalarType.Int64, keys.device).DetachFromDisposeScope();
                _sinkValid = zeros(new long[] { b, _sinks }, ScalarType.Bool, keys.device).DetachFromDisposeScope();
            }
        }

        // Sinks: the first entries of the sequence, written once.
        if (_sinks > 0 && Written < _sinks)
        {
            long n = Math.Min(_sinks - Written, t);
            _sinkKeys!.narrow(2, Written, n).copy_(keys.narrow(2, 0, n));
            _sinkValues!.narrow(2, Written, n).copy_(values.narrow(2, 0, n));
            _sinkPositions!.narrow(1, Written, n).copy_(positions.narrow(1, 0, n));
            _sinkValid!.narrow(1, Written, n).copy_(valid.narrow(1, 0, n));
        }

        // Ring: only the last `capacity` new entries can survive; each goes to slot (sequence index mod capacity).
        if (_capacity > 0)
        {
            long keep = Math.Min(t, _capacity);
            long first = t - keep;
            var slots = TorchArithmetic.Arange(Written + first, Written + t, ScalarType.Int64, keys.device).Mod(_capacity);

            _keys.index_copy_(2, slots, keys.narrow(2, first, keep));
            _values!.index_copy_(2, slots, values.narrow(2, first, keep));
            _positions!.index_copy_(1, slots, positions.narrow(1, first, keep));
            _valid!.index_copy_(1, slots, valid.narrow(1, first, keep));
        }

        Written += t;
    }

    /// <summary>A copy holding batch rows <paramref name="rows"/> of this cache.</summary>
    public WindowKvCache SelectRows(Tensor rows)
    {
        using var noGrad = no_grad();
        Tensor? Pick(Tensor? t) => t?.index_select(0, rows).DetachFromDisposeScope();
        return new WindowKvCache(_capacity, _sinks)
        {
            _keys = Pick(_keys), _values = Pick(_values), _positions = Pick(_positions), _valid = Pick(_valid),
            _sinkKeys = Pick(_sinkKeys), _sinkValues = Pick(_sinkValues), _sinkPositions = Pick(_sinkPositions), _sinkValid = Pick(_sinkValid),
            Written = Written,
        };
    }

    public void Dispose()
    {
        foreach (var t in new[] { _keys, _values, _positions, _valid, _sinkKeys, _sinkValues, _sinkPositions, _sinkValid })
            t?.Dispose();
        _keys = _values = _positions = _valid = _sinkKeys = _sinkValues = _sinkPositions = _sinkValid = null;
        Written = 0;
    }
}
