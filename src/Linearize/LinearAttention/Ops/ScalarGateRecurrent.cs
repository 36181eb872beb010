using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Linear attention with one decay per head and step (RetNet / Gated Retention / Mamba2-SSD / mLSTM family; fla
/// <c>fla/ops/simple_gla/naive.py</c>): <c>S_t = exp(g_t) S_{t−1} + k_tᵀ v_t</c>, <c>o_t = scale · q_t S_t</c>, with
/// <c>g [B, T, H]</c>. Recurrent reference and decoding step.
/// </summary>
public static class ScalarGateRecurrent
{
    /// <summary>One step: <c>q, k [B, H, K]</c>, <c>v [B, H, V]</c>, <c>g [B, H]</c>, <c>state [B, H, K, V]</c>.</summary>
    public static (Tensor Output, Tensor State) Step(Tensor q, Tensor k, Tensor v, Tensor g, Tensor state, double scale)
    {
        using var scope = NewDisposeScope();
        var s = state * g.exp().unsqueeze(-1).unsqueeze(-1) + k.unsqueeze(-1) * v.unsqueeze(-2);
        var o = (q.unsqueeze(-1) * s).sum(-2) * scale;
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>Naive loop: <c>q, k [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, <c>g [B, T, H]</c>; float32 outputs.</summary>
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
