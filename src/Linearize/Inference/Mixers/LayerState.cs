namespace Linearize.Inference.Mixers;

/// <summary>What one layer of one sequence keeps between decoding steps in the engine.</summary>
public abstract class LayerState : IDisposable
{
    /// <summary>Bytes this state occupies (and a step reads).</summary>
    public abstract long StateBytes { get; }

    public abstract LayerState Clone();

    /// <summary>For benchmarks: the state after <paramref name="tokens"/> tokens, filled with small random values instead
    /// of computed ones (a step's cost depends on the state's size, never on its values).</summary>
    public abstract void FillSynthetic(long tokens, Random random);

    /// <summary>Fills <paramref name="buffer"/> with values in [−0.5, 0.5).</summary>
    internal static void FillRandom(FloatBuffer buffer, Random random)
    {
        for (long i = 0; i < buffer.Length; i += int.MaxValue)
            FillRandom(buffer.AsSpan(i, (int)Math.Min(int.MaxValue, buffer.Length - i)), random);
    }

    /// <summary>Fills <paramref name="span"/> with values in [−0.5, 0.5).</summary>
    internal static void FillRandom(Span<float> span, Random random)
    {
        for (int j = 0; j < span.Length; j++)
            span[j] = (float)random.NextDouble() - 0.5f;
    }

    public abstract void Dispose();
}
