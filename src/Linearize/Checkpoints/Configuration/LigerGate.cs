namespace Linearize.Checkpoints.Configuration;

/// <summary>Where a Liger layer's forget gate comes from (docs/METHODS.md §1.8).</summary>
public enum LigerGate
{
    /// <summary>Liger's parameter-free gate, built from the key projection (per channel for GLA, pooled per head for the
    /// scalar families).</summary>
    Keys,

    /// <summary>Lizard's learned gate: one scalar per query head, <c>log α = logsigmoid(W_γ x + b_γ)/normalizer</c>, from a
    /// new per-layer projection <c>g_proj</c> <c>[H, C]</c> with bias.</summary>
    Learned,
}
