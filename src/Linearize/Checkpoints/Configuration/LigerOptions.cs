namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// Every constant of a Liger layer, named, with the reference's defaults (Liger paper §3, code
/// <c>liger/models/liger_gla/modeling_liger_gla.py</c>; docs/METHODS.md §1.2–1.3).
/// </summary>
public sealed record LigerOptions
{
    public LigerFamily Family { get; init; } = LigerFamily.Gla;

    /// <summary>Keys each query sees in the softmax window branch, itself included. The paper's Eq. 10 says 64; the
    /// reference code's flash-attention <c>window_size=(64, 64)</c> gives 65.</summary>
    public int Window { get; init; } = 64;

    /// <summary>Weight of the window (softmax) branch: <c>o = α·window + β·recurrent</c> (paper Eq. 9: 0.5).</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>Weight of the gated recurrent branch (paper Eq. 9: 0.5).</summary>
    public double Beta { get; init; } = 0.5;

    /// <summary>The log gate is divided by this. Code: 16 for GLA and GSA (<c>gate_logit_normalizer</c>); HGRN2 uses none.
    /// Null = the family's default (<see cref="DefaultNormalizer"/>).</summary>
    public double? GateNormalizer { get; init; }

    /// <summary>GSA slots M per head (the pool size). Null = head_dim, i.e. the identity pool of the released
    /// <c>liger_gsa_base</c> checkpoint config (pool_size 128 = d).</summary>
    public int? Slots { get; init; }

    /// <summary>Scale of the recurrent read-out <c>o = scale·φ(q) S</c>: Liger passes 1 (no 1/√d).</summary>
    public double RecurrentScale { get; init; } = 1.0;

    /// <summary>Divide the recurrent output by <c>φ(q)·Σ decayed φ(k)</c> (LoLCATs-style denominator). Off in Liger; an
    /// option for models whose unnormalized recurrent branch swamps the window branch.</summary>
    public bool NormalizeRecurrent { get; init; }

    /// <summary>Delta-rule families: β = 2σ(W_β x) ∈ (0, 2) instead of σ(W_β x) ∈ (0, 1), so a write can flip the sign of
    /// what the state holds along k (transition eigenvalue 1 − β ∈ (−1, 1)): Grazzi et al. 2025, "Unlocking
    /// State-Tracking in Linear RNNs Through Negative Eigenvalues" (fla's <c>allow_neg_eigval</c>).</summary>
    public bool NegativeEigenvalues { get; init; }

    /// <summary>Sparse global cache (LoLA, McDermott et al. 2025; docs/METHODS.md §1.7): up to this many key–value pairs
    /// per KV head that left the window, kept by how badly the recurrent state recalls them, attended in the same softmax
    /// as the window. 0 = off (the plain Liger layer). Fixed size, so the decoding state does not grow.</summary>
    public int SparseCache { get; init; }

    /// <summary>The recurrent state carries the key sum <c>z = Σ decayed φ(k)</c> as an extra value column: for the
    /// normalized read-out, and for the gated families' sparse-cache recall error (§1.7), which is normalized. The delta
    /// rule's recall error reads its state as it is (a key-value memory with unit keys), so it carries none.</summary>
    public bool CarriesKeySum => NormalizeRecurrent || (SparseCache > 0 && !IsDeltaRule);

    /// <summary>True for the delta-rule families (<see cref="LigerFamily.Gdn"/>, <see cref="LigerFamily.DeltaNet"/>).</summary>
    public bool IsDeltaRule => Family is LigerFamily.Gdn or LigerFamily.DeltaNet;

    /// <summary>Where the forget gate comes from: the keys (Liger) or a learned per-head projection <c>g_proj</c> (Lizard;
    /// docs/METHODS.md §1.8).</summary>
    public LigerGate Gate { get; init; } = LigerGate.Keys;

    /// <summary>The learned gate's initialisation. Null (the default): <c>g_proj</c> is the pooled key projection, each
    /// head's row the mean of its KV head's <c>k_proj</c> rows (negated for Mamba2), so an untrained conversion keeps the
    /// key-pooled gate exactly for the scalar families. A number: zero weights and this bias, a data-independent start
    /// at <c>log α = logsigmoid(bias)/normalizer</c> for every token.</summary>
    public double? LearnedGateBias { get; init; }

    /// <summary>Normalization of the recurrent read-out: none (Liger) or a per-head RMSNorm (TransNormer; docs/METHODS.md §1.9).</summary>
    public LigerOutputNorm OutputNorm { get; init; } = LigerOutputNorm.None;

    /// <summary>True when the layer has the learned gate's projection <c>g_proj</c>.</summary>
    public bool HasLearnedGate => Gate == LigerGate.Learned;

    /// <summary>The families whose gate is one scalar per head or per channel from the keys, which a learned scalar per head
    /// can replace: GLA, the scalar families and Gated DeltaNet (not HGRN2, whose key is tied to its per-channel gate, GSA's
    /// per-slot gate, or DeltaNet, which has none).</summary>
    public static bool SupportsLearnedGate(LigerFamily family) =>
        family is LigerFamily.Gla or LigerFamily.Mamba2 or LigerFamily.Mlstm or LigerFamily.Retention or LigerFamily.Gdn;

    /// <summary>The families whose read-out is a sum over keys that a denominator normalizes, which an RMSNorm can normalize
    /// instead (not GSA, whose slot softmax normalizes, or the delta rule, whose state is not a sum of keys).</summary>
    public static bool SupportsOutputNorm(LigerFamily family) =>
        family is LigerFamily.Gla or LigerFamily.Hgrn2 or LigerFamily.Mamba2 or LigerFamily.Mlstm or LigerFamily.Retention;

    /// <summary>Chunk length of the chunked kernels (fla BT = 64).</summary>
    public int ChunkSize { get; init; } = 64;

    /// <summary>Sub-chunk length of the intra-chunk blocks (fla BC = 16).</summary>
    public int SubChunkSize { get; init; } = 16;

    /// <summary>The gate normalizer the reference uses for a family when none is given.</summary>
    public static double DefaultNormalizer(LigerFamily family) => family switch
    {
        LigerFamily.Gla or LigerFamily.Gsa => 16.0, // gate_logit_normalizer = 16 in modeling_liger_{gla,gsa}.py
        _ => 1.0,                                   // HGRN2 code and Table 1's scalar families: no normalizer
    };

    public double EffectiveNormalizer => GateNormalizer ?? DefaultNormalizer(Family);

    public void Validate(int headDim)
    {
        if (Window < 1)
            throw new LinearizeException($"window must be at least 1, got {Window}");
        if (GateNormalizer is <= 0)
            throw new LinearizeException($"gate normalizer must be positive, got {GateNormalizer}");
        if (Slots is < 1)
            throw new LinearizeException($"slots must be at least 1, got {Slots}");
        if (ChunkSize < 1 || SubChunkSize < 1 || ChunkSize % SubChunkSize != 0)
            throw new LinearizeException($"chunk size {ChunkSize} must be a positive multiple of the sub-chunk size {SubChunkSize}");
        if (NegativeEigenvalues && !IsDeltaRule)
            throw new LinearizeException($"negative eigenvalues apply to the delta-rule families (liger-gdn, liger-deltanet), not {Family}");
        // A ones column appended to v would be delta-updated like any value column, so it would not count the keys.
        if (NormalizeRecurrent && IsDeltaRule)
            throw new LinearizeException("normalize_recurrent does not apply to the delta rule: its state is not a sum of keys");
        if (HasLearnedGate && !SupportsLearnedGate(Family))
            throw new LinearizeException($"the learned gate applies to liger-gla, liger-mamba2, liger-mlstm, liger-retention and liger-gdn, not {Family}");
        if (LearnedGateBias is { } bias && (!HasLearnedGate || !double.IsFinite(bias)))
            throw new LinearizeException($"a learned gate bias ({bias}) needs the learned gate and a finite value");
        if (OutputNorm != LigerOutputNorm.None && !SupportsOutputNorm(Family))
            throw new LinearizeException($"the RMSNorm read-out applies to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm and liger-retention, not {Family}");
        if (OutputNorm != LigerOutputNorm.None && NormalizeRecurrent)
            throw new LinearizeException("normalize_recurrent and the RMSNorm read-out are two normalizations of the same read-out: choose one");
        if (SparseCache < 0)
            throw new LinearizeException($"sparse cache must be ≥ 0, got {SparseCache}");
        // The recall error reads a state with the written key; GSA's state is read through a slot softmax instead.
        if (SparseCache > 0 && Family == LigerFamily.Gsa)
            throw new LinearizeException($"the sparse cache applies to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm, liger-retention, liger-gdn and liger-deltanet, not {Family}");
        if (SparseCache > 0 && Window < 2)
            throw new LinearizeException($"the sparse cache needs a window of at least 2 keys, got {Window}");
        if (headDim < 1)
            throw new LinearizeException($"head_dim must be positive, got {headDim}");
    }
}
