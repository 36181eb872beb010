using static TorchSharp.torch;

namespace Linearize.Caching;

/// <summary>
/// Decoding state of a linearized layer: the recurrent state(s) in float32 (GLA / scalar: <c>S [B, H, K, V]</c>; GSA:
/// key state <c>[B, H, K, M]</c> and value state <c>[B, H, M, V]</c>) and the window branch's fixed-size
/// <see cref="WindowKvCache"/>, and with a sparse cache (docs/METHODS.md §1.7) its <see cref="SparseKvCache"/>. Its size
/// does not depend on how many tokens were seen.
/// </summary>
public sealed class LinearLayerCache : ILayerCache
{
    public LinearLayerCache(int windowCapacity, int sinks, int sparseCapacity = 0)
    {
        Window = new WindowKvCache(windowCapacity, sinks);
        Sparse = sparseCapacity > 0 ? new SparseKvCache(sparseCapacity, windowCapacity) : null;
    }

    private LinearLayerCache(WindowKvCache window, SparseKvCache? sparse)
    {
        Window = window;
        Sparse = sparse;
    }

    public WindowKvCache Window { get; }

    /// <summary>The sparse global cache; null when the layer keeps none.</summary>
    public SparseKvCache? Sparse { get; }

    public Tensor? State { get; private set; }

    public Tensor? SlotValueState { get; private set; }

    public void SetState(Tensor state, Tensor? slotValueState = null)
    {
        State?.Dispose();
        SlotValueState?.Dispose();
        State = state.detach().DetachFromDisposeScope();
        SlotValueState = slotValueState?.detach().DetachFromDisposeScope();
    }

    public long StateBytes =>
        Window.StateBytes + (Sparse?.StateBytes ?? 0) + (State is null ? 0 : State.numel() * State.element_size()) +
        (SlotValueState is null ? 0 : SlotValueState.numel() * SlotValueState.element_size());

    public ILayerCache SelectRows(Tensor rows)
    {
        using var noGrad = no_grad();
        return new LinearLayerCache(Window.SelectRows(rows), Sparse?.SelectRows(rows))
        {
            State = State?.index_select(0, rows).DetachFromDisposeScope(),
            SlotValueState = SlotValueState?.index_select(0, rows).DetachFromDisposeScope(),
        };
    }

    public void Dispose()
    {
        Window.Dispose();
        Sparse?.Dispose();
        State?.Dispose();
        SlotValueState?.Dispose();
        State = SlotValueState = null;
    }
}
