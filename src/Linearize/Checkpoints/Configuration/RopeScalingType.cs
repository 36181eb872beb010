namespace Linearize.Checkpoints.Configuration;

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
