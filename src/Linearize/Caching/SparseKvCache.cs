using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// The sparse global cache of a Liger layer (LoLA; docs/METHODS.md §1.7): per batch row and KV head, up to
/// <c>capacity</c> post-RoPE key–value pairs that left the window, with each pair's sequence index and recall error, and
/// the recall errors of the pairs still in the window ring (slot = sequence index mod ring, as
/// <see cref="WindowKvCache"/>), which become candidates when they leave it. Keys/values <c>[B, H_kv, N, D]</c>, index
/// <c>[B, H_kv, N]</c> int64 (−1 = empty slot), score <c>[B, H_kv, N]</c> and ring score <c>[B, H_kv, ring]</c> float32.
/// Fixed size: it does not grow with the context.
/// </summary>
public sealed class SparseKvCache : IDisposable
{
    public SparseKvCache(int capacity, int ring)
    {
        Capacity = capacity;
        Ring = ring;
    }

    public int Capacity { get; }

    public int Ring { get; }

    public Tensor? Keys { get; private set; }

    public Tensor? Values { get; private set; }

    public Tensor? Index { get; private set; }

    public Tensor? Score { get; private set; }

    public Tensor? RingScore { get; private set; }

    /// <summary>Replaces the contents (tensors are detached and kept).</summary>
    public void Set(Tensor keys, Tensor values, Tensor index, Tensor score, Tensor ringScore)
    {
        DisposeTensors();
        Keys = keys.detach().DetachFromDisposeScope();
        Values = values.detach().DetachFromDisposeScope();
        Index = index.detach().DetachFromDisposeScope();
        Score = score.detach().DetachFromDisposeScope();
        RingScore = ringScore.detach().DetachFromDisposeScope();
    }

    public long StateBytes => Keys is null ? 0
        : 2 * Keys.numel() * Keys.element_size() + Index!.numel() * 8 + Score!.numel() * 4 + RingScore!.numel() * 4;

    /// <summary>A copy holding batch rows <paramref name="rows"/>.</summary>
    public SparseKvCache SelectRows(Tensor rows)
    {
        using var noGrad = no_grad();
        Tensor? Pick(Tensor? t) => t?.index_select(0, rows).DetachFromDisposeScope();
        return new SparseKvCache(Capacity, Ring)
        {
            Keys = Pick(Keys), Values = Pick(Values), Index = Pick(Index), Score = Pick(Score), RingScore = Pick(RingScore),
        };
    }

    private void DisposeTensors()
    {
        foreach (var t in new[] { Keys, Values, Index, Score, RingScore })
            t?.Dispose();
        Keys = Values = Index = Score = RingScore = null;
    }

    public void Dispose() => DisposeTensors();
}
