namespace Linearize.Inference.Mixers;

/// <summary>What one layer of one sequence keeps between decoding steps in the engine.</summary>
public abstract class LayerState : IDisposable
{
    /// <summary>Bytes this state occupies (and a step reads).</summary>
    public abstract long StateBytes { get; }

    public abstract LayerState Clone();

    public abstract void Dispose();
}
