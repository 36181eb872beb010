namespace Linearize.Checkpoints;

/// <summary>The kinds of RoPE frequency scaling this project implements.</summary>
public enum RopeScalingType
{
    /// <summary>Plain RoPE: <c>inv_freq[i] = theta^(-2i/d)</c>.</summary>
    None,

    /// <summary>Position interpolation: every frequency divided by <c>factor</c>.</summary>
    Linear,

    /// <summary>Llama 3.1's piecewise scaling (transformers <c>_compute_llama3_parameters</c>).</summary>
    Llama3,
}

/// <summary>The <c>rope_scaling</c> block of a Hugging Face config.</summary>
public sealed record RopeScaling(
    RopeScalingType Type,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    public static readonly RopeScaling None = new(RopeScalingType.None);

    public static readonly string[] SupportedTypes = { "default", "linear", "llama3" };
}
