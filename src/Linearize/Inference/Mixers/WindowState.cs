namespace Linearize.Inference.Mixers;

/// <summary>
/// A sliding-window layer's state for one sequence: a ring of the last <c>window − 1</c> post-RoPE keys/values
/// (position p in slot <c>p mod (window − 1)</c>; the window's last key is the current token's, which the step
/// holds), the first <c>sinks</c> keys/values kept for good, and, for Liger layers, the recurrent state(s) in float32:
/// GLA / scalar / delta-rule families <c>S [H, K, V]</c> (V + 1 columns with a denominator), GSA <c>Hk [H, K, M]</c> and
/// <c>Hv [H, M, V]</c>. Fixed size: it does not grow with the context.
/// </summary>
internal sealed unsafe class WindowState : LayerState
{
    public WindowState(int kvHeads, int headDim, int ring, int sinks, long recurrentFloats, long slotValueFloats)
        : this(kvHeads, headDim, ring, sinks, new FloatBuffer((long)kvHeads * ring * headDim), new FloatBuffer((long)kvHeads * ring * headDim),
            new FloatBuffer((long)kvHeads * sinks * headDim), new FloatBuffer((long)kvHeads * sinks * headDim),
            new FloatBuffer(recurrentFloats), new FloatBuffer(slotValueFloats))
    {
    }

    private WindowState(int kvHeads, int headDim, int ring, int sinks, FloatBuffer ringKeys, FloatBuffer ringValues,
        FloatBuffer sinkKeys, FloatBuffer sinkValues, FloatBuffer recurrent, FloatBuffer slotValues)
    {
        KvHeads = kvHeads;
        HeadDim = headDim;
        Ring = ring;
        Sinks = sinks;
        RingKeys = ringKeys;
        RingValues = ringValues;
        SinkKeys = sinkKeys;
        SinkValues = sinkValues;
        Recurrent = recurrent;
        SlotValues = slotValues;
    }

    public int KvHeads { get; }

    public int HeadDim { get; }

    /// <summary>Ring slots: window − 1.</summary>
    public int Ring { get; }

    public int Sinks { get; }

    public FloatBuffer RingKeys { get; }

    public FloatBuffer RingValues { get; }

    public FloatBuffer SinkKeys { get; }

    public FloatBuffer SinkValues { get; }

    public FloatBuffer Recurrent { get; }

    public FloatBuffer SlotValues { get; }

    public override long StateBytes =>
        RingKeys.Bytes + RingValues.Bytes + SinkKeys.Bytes + SinkValues.Bytes + Recurrent.Bytes + SlotValues.Bytes;

    public float* RingKey(int kvHead, long position) => RingKeys.Pointer + ((long)kvHead * Ring + position % Ring) * HeadDim;

    public float* RingValue(int kvHead, long position) => RingValues.Pointer + ((long)kvHead * Ring + position % Ring) * HeadDim;

    public float* SinkKey(int kvHead, long position) => SinkKeys.Pointer + ((long)kvHead * Sinks + position) * HeadDim;

    public float* SinkValue(int kvHead, long position) => SinkValues.Pointer + ((long)kvHead * Sinks + position) * HeadDim;

    public override void FillSynthetic(long tokens, Random random)
    {
        foreach (var b in new[] { RingKeys, RingValues, SinkKeys, SinkValues, Recurrent, SlotValues })
            FillRandom(b, random);
    }

    public override LayerState Clone() => new WindowState(KvHeads, HeadDim, Ring, Sinks, RingKeys.Clone(), RingValues.Clone(),
        SinkKeys.Clone(), SinkValues.Clone(), Recurrent.Clone(), SlotValues.Clone());

    public override void Dispose()
    {
        RingKeys.Dispose();
        RingValues.Dispose();
        SinkKeys.Dispose();
        SinkValues.Dispose();
        Recurrent.Dispose();
        SlotValues.Dispose();
    }
}
