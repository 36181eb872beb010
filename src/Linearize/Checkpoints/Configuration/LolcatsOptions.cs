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

    /// <summary>Sparse global cache (LoLA, McDermott et al. 2025; docs/METHODS.md §1.7): up to this many evicted key–value
    /// pairs per KV head that the linear state recalls worst, attended in the same softmax as the window and kept out of
    /// the linear state while cached. 0 = off (the plain layer). Sliding window only.</summary>
    public int SparseCache { get; init; }

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
        if (SparseCache < 0)
            throw new LinearizeException($"sparse cache must be ≥ 0, got {SparseCache}");
        // The terrace folds a whole block at once; LoLA's setting (and this cache's offer-per-token rule) is the sliding window.
        if (SparseCache > 0 && Shape != LolcatsWindowShape.Sw)
            throw new LinearizeException("the sparse cache applies to lolcats-sw, not the terraced window (lolcats-tk)");
        if (SparseCache > 0 && Window < 2)
            throw new LinearizeException($"the sparse cache needs a window of at least 2 keys, got {Window}");
    }
}
