using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// Decoding state of a LoLCATs layer, fixed in size: the last <c>capacity</c> post-RoPE keys and values in order
/// (<c>[B, H_kv, capacity, D]</c>, with positions <c>[B, capacity]</c> and validity <c>[B, capacity]</c>; empty slots are
/// invalid), the linear state <c>Σ φk [v, 1]ᵀ</c> <c>[B, H, F, Dv + 1]</c> in float32 (its last column is the key state
/// Σ φk), and per row the <c>Frontier</c>: every key at a position below it is inside the linear state. Keys are stored
/// raw and featurized when they leave the window, as in the reference's <c>LinearAttentionTKWindowCache</c>.
/// With a sparse cache (LoLA, docs/METHODS.md §1.7; sliding window only) it also holds the <see cref="SparseKvCache"/> of
/// evicted pairs kept out of the state, and the frontier is one position later: every pair that has left the window is
/// then either folded into the state or in the slots.
/// </summary>
public sealed class LolcatsLayerCache : ILayerCache
{
    public LolcatsLayerCache(int capacity, int sparseCapacity = 0)
    {
        Capacity = capacity;
        Sparse = sparseCapacity > 0 ? new SparseKvCache(sparseCapacity, 0) : null;
    }

    /// <summary>Keys kept: w for the sliding window, 2w for the terrace.</summary>
    public int Capacity { get; }

    public Tensor? Keys { get; private set; }

    public Tensor? Values { get; private set; }

    public Tensor? Positions { get; private set; }

    public Tensor? Valid { get; private set; }

    public Tensor? State { get; private set; }

    /// <summary>The sparse global cache (its ring scores are empty: a LoLCATs pair is scored when it is offered); null
    /// when the layer keeps none.</summary>
    public SparseKvCache? Sparse { get; private set; }

    /// <summary><c>[B]</c> int64: keys at positions below this are in <see cref="State"/>.</summary>
    public Tensor? Frontier { get; private set; }

    public bool IsEmpty => Keys is null;

    /// <summary>Entries still outside the state, as context for the next call: keys/values <c>[B, H_kv, C, D]</c>,
    /// positions <c>[B, C]</c>, validity <c>[B, C]</c> (folded entries are marked invalid).</summary>
    public (Tensor Keys, Tensor Values, Tensor Positions, Tensor Valid)? Context() =>
        Keys is null ? null : (Keys, Values!, Positions!, Valid!.logical_and(Positions! >= Frontier!.unsqueeze(1)));

    /// <summary>Replaces the contents with the last <see cref="Capacity"/> entries of <paramref name="keys"/> etc.
    /// (<c>[B, H_kv, N, D]</c>, left-padded with empty slots when N is smaller), the new state and frontier.</summary>
    public void Set(Tensor keys, Tensor values, Tensor positions, Tensor valid, Tensor state, Tensor frontier)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long n = keys.shape[2];
        if (n < Capacity)
        {
            long pad = Capacity - n, b = keys.shape[0], h = keys.shape[1], d = keys.shape[3];
            keys = cat(new[] { zeros(new long[] { b, h, pad, d }, keys.dtype, keys.device), keys }, 2);
            values = cat(new[] { zeros(new long[] { b, h, pad, values.shape[3] }, values.dtype, values.device), values }, 2);
            positions = cat(new[] { zeros(new long[] { b, pad }, ScalarType.Int64, keys.device), positions }, 1);
            valid = cat(new[] { zeros(new long[] { b, pad }, ScalarType.Bool, keys.device), valid }, 1);
        }

        var newKeys = keys.narrow(2, keys.shape[2] - Capacity, Capacity).detach().clone().DetachFromDisposeScope();
        var newValues = values.narrow(2, values.shape[2] - Capacity, Capacity).detach().clone().DetachFromDisposeScope();
        var newPositions = positions.narrow(1, positions.shape[1] - Capacity, Capacity).clone().DetachFromDisposeScope();
        var newValid = valid.narrow(1, valid.shape[1] - Capacity, Capacity).clone().DetachFromDisposeScope();
        var newState = state.detach().clone().DetachFromDisposeScope();
        var newFrontier = frontier.clone().DetachFromDisposeScope();
        DisposeTensors();
        (Keys, Values, Positions, Valid, State, Frontier) = (newKeys, newValues, newPositions, newValid, newState, newFrontier);
    }

    public long StateBytes =>
        Keys is null ? 0 : 2 * Keys.numel() * Keys.element_size() + Positions!.numel() * 8 + Valid!.numel() +
                           State!.numel() * State.element_size() + Frontier!.numel() * 8 + (Sparse?.StateBytes ?? 0);

    public ILayerCache SelectRows(Tensor rows)
    {
        using var noGrad = no_grad();
        Tensor? Pick(Tensor? t) => t?.index_select(0, rows).DetachFromDisposeScope();
        return new LolcatsLayerCache(Capacity)
        {
            Keys = Pick(Keys), Values = Pick(Values), Positions = Pick(Positions), Valid = Pick(Valid), State = Pick(State), Frontier = Pick(Frontier),
            Sparse = Sparse?.SelectRows(rows),
        };
    }

    public void Dispose()
    {
        Sparse?.Dispose();
        DisposeTensors();
    }

    private void DisposeTensors()
    {
        foreach (var t in new[] { Keys, Values, Positions, Valid, State, Frontier })
            t?.Dispose();
        Keys = Values = Positions = Valid = State = Frontier = null;
    }
}
