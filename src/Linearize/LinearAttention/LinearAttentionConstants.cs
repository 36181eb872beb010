using Linearize.Checkpoints.Configuration;

namespace Linearize.LinearAttention;

/// <summary>
/// The fixed numbers a linear-attention layer and its decode-engine twin must agree on, in one place: the TorchSharp
/// layers (<c>LinearAttention/Layers</c>) and the engine mixers (<c>Inference/Mixers</c>) both read them from here, so
/// the two cannot drift apart. Constants a user may change live on <see cref="LigerOptions"/> / <see cref="LolcatsOptions"/>.
/// </summary>
public static class LinearAttentionConstants
{
    /// <summary>ε of the normalized recurrent read-out <c>o / (φ(q)·Σ decayed φ(k) + ε)</c> (<c>--normalize-recurrent</c>,
    /// docs/METHODS.md §1.2).</summary>
    public const double DenominatorEps = 1e-6;

    /// <summary>ε of the delta rule's L2 normalization of q and k, <c>x / √(Σx² + ε)</c> (fla's <c>l2norm</c>;
    /// docs/METHODS.md §1.6).</summary>
    public const double L2NormEps = 1e-6;

    /// <summary>ε of the RMSNorm read-out <c>o / √(mean(o²) + ε)</c> (<c>--output-norm rmsnorm</c>, docs/METHODS.md §1.9).</summary>
    public const double OutputNormEps = 1e-6;
}
