using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// The (gated) delta rule in recurrent form — DeltaNet (Yang et al. 2024, α = 1) and Gated DeltaNet (Yang et al.
/// 2025, α ∈ (0, 1]); fla <c>fla/ops/gated_delta_rule/naive.py</c> <c>naive_recurrent_gated_delta_rule</c>. With the
/// state stored key-major, <c>S [K, V]</c> (so that <c>Sᵀk</c> is the value the state recalls for key k):
/// <c>S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ</c>, <c>o_t = scale · S_tᵀ q_t</c>. Computed as the
/// error-correcting write it is: decay, read the value the state holds for k_t, write β_t times the error,
/// <c>S ← αS; ν = β (v − Sᵀk); S ← S + k νᵀ</c>.
/// </summary>
/// <remarks>
/// β ∈ (0, 1) keeps every transition's eigenvalues in [0, 1] when k is unit-norm; β ∈ (0, 2) lets the eigenvalue
/// along k reach (−1, 0), which Grazzi et al. 2025 ("Unlocking State-Tracking in Linear RNNs Through Negative
/// Eigenvalues") show is what lets linear RNNs track state (parity, modular counting); the operator stays a
/// contraction either way, so the state stays bounded. The keys are expected L2-normalized (the layers do it) —
/// the recurrence itself does not require it. This is the reference every faster form is tested against, and its
/// single step is the decoding update. States are float32.
/// </remarks>
public static class DeltaRuleRecurrent
{
    /// <summary>
    /// One step. <paramref name="q"/>, <paramref name="k"/> <c>[B, H, K]</c>, <paramref name="v"/> <c>[B, H, V]</c>,
    /// <paramref name="beta"/> <c>[B, H]</c>, <paramref name="logAlpha"/> <c>[B, H]</c> (≤ 0) or null for α = 1
    /// (DeltaNet), <paramref name="state"/> <c>[B, H, K, V]</c> float32. Returns <c>o [B, H, V]</c> and the new state.
    /// </summary>
    public static (Tensor Output, Tensor State) Step(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? logAlpha,
        Tensor state, double scale)
    {
        using var scope = NewDisposeScope();
        var s = logAlpha is null ? state : state * logAlpha.exp().unsqueeze(-1).unsqueeze(-1);
        var recalled = (s * k.unsqueeze(-1)).sum(-2);                 // Sᵀk: what the state returns for k  [B, H, V]
        var error = (v - recalled) * beta.unsqueeze(-1);               // ν = β (v − Sᵀk)
        s = s.Plus(k.unsqueeze(-1) * error.unsqueeze(-2));
        var o = (q.unsqueeze(-1) * s).sum(-2).Times(scale);

        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The naive loop over time. <c>q, k [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, <c>beta [B, T, H]</c>,
    /// <c>logAlpha [B, T, H]</c> (≤ 0; null = α = 1), optional initial state <c>[B, H, K, V]</c>. Returns
    /// <c>o [B, T, H, V]</c> (float32) and the final state <c>[B, H, K, V]</c> (float32).
    /// </summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? logAlpha,
        double scale, Tensor? initialState = null)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        q = q.to(ScalarType.Float32);
        k = k.to(ScalarType.Float32);
        v = v.to(ScalarType.Float32);
        beta = beta.to(ScalarType.Float32);
        logAlpha = logAlpha?.to(ScalarType.Float32);
        var state = initialState?.to(ScalarType.Float32) ?? zeros(b, h, dk, dv, device: q.device);
        var outputs = new List<Tensor>((int)t);
        for (long i = 0; i < t; i++)
        {
            (var o, state) = Step(q.select(1, i), k.select(1, i), v.select(1, i), beta.select(1, i),
                logAlpha?.select(1, i), state, scale);
            outputs.Add(o);
        }

        var output = t == 0 ? zeros(b, 0, h, dv, device: q.device) : stack(outputs, 1);
        return (output.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }
}
