namespace Linearize.Checkpoints.Configuration;

/// <summary>The gated recurrent families a Liger layer can build from the key projection (Liger Table 1, docs/METHODS.md §1.3).</summary>
public enum LigerFamily
{
    /// <summary>Gated linear attention: per-channel gate <c>logsigmoid(k)/normalizer</c>; φ = softmax on q and k.</summary>
    Gla,

    /// <summary>HGRN2: per-channel gate <c>logsigmoid(k)</c>, key tied to the gate (<c>1 − α</c>); φ = softmax on q only.</summary>
    Hgrn2,

    /// <summary>Gated slot attention: gate <c>logsigmoid(pool(k))/normalizer</c> over M slots, slot write <c>1 − α</c>; no φ.</summary>
    Gsa,

    /// <summary>Mamba2-style scalar decay <c>−softplus(pool(k))</c> per head; φ = softmax on q and k.</summary>
    Mamba2,

    /// <summary>mLSTM-style scalar forget gate <c>logsigmoid(pool(k))</c> per head; φ = softmax on q and k.</summary>
    Mlstm,

    /// <summary>Gated Retention (YOCO) scalar gate <c>logsigmoid(pool(k))</c> per head; φ = softmax on q and k.</summary>
    Retention,

    /// <summary>Gated DeltaNet (Yang et al. 2025): the delta rule <c>S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ</c>
    /// with the scalar gate <c>log α = logsigmoid(pool(k))</c> per head; φ = L2 normalization of q and k; β from the
    /// layer's one new projection <c>b_proj</c>.</summary>
    Gdn,

    /// <summary>DeltaNet (Yang et al. 2024): the delta rule without decay (α = 1); φ = L2 normalization of q and k; β from
    /// <c>b_proj</c>.</summary>
    DeltaNet,
}
