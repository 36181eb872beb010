using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Gated linear attention with a per-channel log gate, in recurrent form (GLA paper; fla
/// <c>fla/ops/gla/naive.py</c> <c>naive_recurrent_gla</c>): <c>S_t = Diag(exp g_t) S_{t−1} + k_tᵀ v_t</c>,
/// <c>o_t = scale · q_t S_t</c>. This is the reference every faster form is tested against, and its single step is
/// the decoding update.
/// </summary>
public static class GlaRecurrent
{
    /// <summary>
    /// One step. <paramref name="q"/>, <paramref name="k"/>, <paramref name="g"/> <c>[B, H, K]</c>, <paramref name="v"/>
    /// <c>[B, H, V]</c>, <paramref name="state"/> <c>[B, H, K, V]</c> float32. Returns <c>o [B, H, V]</c> and the new state.
    /// </summary>
    public static (Tensor Output, Tensor State) Step(Tensor q, Tensor k, Tensor v, Tensor g, Tensor state, double scale)
    {
        using var scope = NewDisposeScope();
        var s = (state * g.exp().unsqueeze(-1)).Plus(k.unsqueeze(-1) * v.unsqueeze(-2));
        var o = (q.unsqueeze(-1) * s).sum(-2).Times(scale);

        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The naive loop over time. <c>q, k, g [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, optional initial state
    /// <c>[B, H, K, V]</c>; returns <c>o [B, T, H, V]</c> (float32) and the final state <c>[B, H, K, V]</c> (float32).
    /// </summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor g, double scale,
        Tensor? initialState = null)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        q = q.to(ScalarType.Float32);
        k = k.to(ScalarType.Float32);
        v = v.to(ScalarType.Float32);
        g = g.to(ScalarType.Float32);
        var state = initialState?.to(ScalarType.Float32) ?? zeros(b, h, dk, dv, device: q.device);
        var outputs = new List<Tensor>((int)t);
        for (long i = 0; i < t; i++)
        {
            (var o, state) = Step(q.select(1, i), k.select(1, i), v.select(1, i), g.select(1, i), state, scale);
            outputs.Add(o);
        }

        var output = t == 0 ? zeros(b, 0, h, dv, device: q.device) : stack(outputs, 1);
        return (output.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }
}
