using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Gated slot attention (fla <c>fla/ops/gsa/naive.py</c> <c>naive_recurrent_gsa</c>, docs/METHODS.md §3.9): two gated
/// linear recurrences joined by a softmax over M slots.
/// Pass 1 (keys → slots, gate on the slot side): <c>Hk_t = Hk_{t−1} ⊙ (1 α_tᵀ) + k_tᵀ s_t</c>,
/// <c>p_t = softmax(scale · q_t Hk_t)</c>. Pass 2 (slots → values): <c>Hv_t = Diag(α_t) Hv_{t−1} + s_tᵀ v_t</c>,
/// <c>o_t = p_t Hv_t</c>. Shapes: <c>q, k [B, T, H, K]</c>, <c>s, g [B, T, H, M]</c> (g = log α), <c>v [B, T, H, V]</c>;
/// states <c>Hk [B, H, K, M]</c>, <c>Hv [B, H, M, V]</c>.
/// </summary>
public static class GsaRecurrent
{
    /// <summary>One step with <c>[B, H, *]</c> inputs.</summary>
    public static (Tensor Output, Tensor KeyState, Tensor ValueState) Step(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g,
        Tensor keyState, Tensor valueState, double scale)
    {
        using var scope = NewDisposeScope();
        var alpha = g.exp();
        var hk = (keyState * alpha.unsqueeze(-2)).Plus(k.unsqueeze(-1) * s.unsqueeze(-2));
        var p = (q.unsqueeze(-1) * hk).sum(-2).Times(scale).softmax(-1);
        var hv = (valueState * alpha.unsqueeze(-1)).Plus(s.unsqueeze(-1) * v.unsqueeze(-2));

        var o = (p.unsqueeze(-1) * hv).sum(-2);
        return (o.MoveToOuterDisposeScope(), hk.MoveToOuterDisposeScope(), hv.MoveToOuterDisposeScope());
    }

    public static (Tensor Output, Tensor KeyState, Tensor ValueState) Forward(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g,
        double scale, Tensor? keyState = null, Tensor? valueState = null)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], m = s.shape[3], dv = v.shape[3];
        var (qf, kf, vf, sf, gf) = (q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32),
            s.to(ScalarType.Float32), g.to(ScalarType.Float32));
        var hk = keyState?.to(ScalarType.Float32) ?? zeros(b, h, dk, m, device: q.device);
        var hv = valueState?.to(ScalarType.Float32) ?? zeros(b, h, m, dv, device: q.device);
        var outputs = new List<Tensor>((int)t);
        for (long i = 0; i < t; i++)
        {
            (var o, hk, hv) = Step(qf.select(1, i), kf.select(1, i), vf.select(1, i), sf.select(1, i), gf.select(1, i), hk, hv, scale);
            outputs.Add(o);
        }

        var output = t == 0 ? zeros(b, 0, h, dv, device: q.device) : stack(outputs, 1);
        return (output.MoveToOuterDisposeScope(), hk.MoveToOuterDisposeScope(), hv.MoveToOuterDisposeScope());
    }
}
