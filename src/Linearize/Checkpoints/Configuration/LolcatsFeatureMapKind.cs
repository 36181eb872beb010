namespace Linearize.Checkpoints.Configuration;

/// <summary>The learnable feature map φ of a LoLCATs layer (docs/METHODS.md §2.3).</summary>
public enum LolcatsFeatureMapKind
{
    /// <summary>Hedgehog: <c>φ(x) = clamp_min([softmax(xW) ⊕ softmax(−xW)], eps)</c>, 2·d' features per head.</summary>
    Hedgehog,

    /// <summary>T2R: <c>φ(x) = clamp_min(ReLU(xW + b), eps)</c>, d' features per head, a learned scalar bias per head.</summary>
    T2r,
}
