namespace Linearize.Checkpoints.Configuration;

/// <summary>How a Liger layer's recurrent read-out is normalized before the α/β mix (docs/METHODS.md §1.9).</summary>
public enum LigerOutputNorm
{
    /// <summary>Liger's unnormalized read-out (or the denominator, with <see cref="LigerOptions.NormalizeRecurrent"/>).</summary>
    None,

    /// <summary>TransNormer's NormAttention (Qin et al. 2022, "The Devil in Linear Transformer"): each head's read-out
    /// divided by its root mean square, <c>o / √(mean(o²) + ε)</c>, without a gain, instead of by a denominator.</summary>
    RmsNorm,
}
