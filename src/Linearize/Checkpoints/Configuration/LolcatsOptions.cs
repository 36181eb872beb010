namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// Every constant of a LoLCATs layer, named, with the headline configuration's defaults
/// (<c>configs/model/distill_llama3_8b_lk_smd_wtk64_fd64_w01.yaml</c> run with <c>--lk_zero_init</c>; docs/METHODS.md §2.1–2.4).
/// </summary>
public sealed record LolcatsOptions
{
    /// <summary>The window size w: the sliding window's key count (query included), or the terrace's block length.</summary>
    public int Window { get; init; } = 64;

    public LolcatsWindowShape Shape { get; init; } = LolcatsWindowShape.Sw;

    public LolcatsFeatureMapKind FeatureMap { get; init; } = LolcatsFeatureMapKind.Hedgehog;

    /// <summary>d', the output width of the learned projection W ∈ R^{H×d×d'}. Null = min(64, head_dim) (the paper's 64
    /// for d = 128 heads).</summary>
    public int? FeatureDim { get; init; }

    /// <summary>Initial logit of the per-head window factor γ = σ(logit): log(1/9), so γ = 0.1 (<c>init_window_factor</c>).</summary>
    public double InitWindowFactor { get; init; } = -2.1972245773362196;

    /// <summary>λ = 1 − γ instead of λ = 1 for the linear term (<c>affine_attention_factors</c>; off in the paper).</summary>
    public bool AffineAttentionFactors { get; init; }

    /// <summary>The feature map's clamp floor (<c>eps: 1e-12</c>); it really fires on trained weights (docs/METHODS.md §2.4.1).</summary>
    public double FeatureEps { get; init; } = 1e-12;

    /// <summary>Queries per block of the chunked layer: memory and time per block are O(block · (block + 2w)).</summary>
    public int QueryBlock { get; init; } = 64;

    public int EffectiveFeatureDim(int headDim) => FeatureDim ?? Math.Min(64, headDim);

    /// <summary>Features per head after φ: 2·d' for Hedgehog (both softmax half-spaces), d' for T2R.</summary>
    public int FeatureWidth(int headDim) =>
        FeatureMap == LolcatsFeatureMapKind.Hedgehog ? 2 * EffectiveFeatureDim(headDim) : EffectiveFeatureDim(headDim);

    /// <summary>How far back (in tokens) a key can still be scored by the window or its neighbourhood: w for the sliding
    /// window, 2w for the terrace (a query sees the start of the previous block). Keys at least this far back are
    /// always in the linear term.</summary>
    public int Lag => Shape == LolcatsWindowShape.Sw ? Window : 2 * Window;

    public void Validate(int headDim)
    {
        if (Window < 1)
            throw new LinearizeException($"window must be at least 1, got {Window}");
        if (FeatureDim is < 1)
            throw new LinearizeException($"feature dim must be at least 1, got {FeatureDim}");
        if (FeatureEps < 0 || double.IsNaN(FeatureEps))
            throw new LinearizeException($"feature eps must be ≥ 0, got {FeatureEps}");
        if (QueryBlock < 1)
            throw new LinearizeException($"query block must be at least 1, got {QueryBlock}");
        if (double.IsNaN(InitWindowFactor) || double.IsInfinity(InitWindowFactor))
            throw new LinearizeException($"initial window factor must be finite, got {InitWindowFactor}");
        if (headDim < 1)
            throw new LinearizeException($"head_dim must be positive, got {headDim}");
    }
}
