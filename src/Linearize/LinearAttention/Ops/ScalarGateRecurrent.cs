using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>
/// Linear attention with one decay per head and step (RetNet / Gated Retention / Mamba2-SSD / mLSTM family; fla
/// <c>fla/ops/simple_gla/naive.py</c>): <c>S_t = exp(g_t) S_{t−1} + k_tᵀ v_t</c>, <c>o_t = scale · q_t S_t</c>, with
/// <c>g [B, T, H]</c>. By definition this is GLA with the same gate on every key channel, so the reference and the
/// decoding step are <see cref="GlaRecurrent"/> with the gate broadcast over K; the chunked kernel
/// (<see cref="ScalarGateChunked"/>) is independent and tested against it.
/// </summary>
public static class ScalarGateRecurrent
{
    /// <summary>One step: <c>q, k [B, H, K]</c>, <c>v [B, H, V]</c>, <c>g [B, H]</c>, <c>state [B, H, K, V]</c>.</summary>
    public static (Tensor Output, Tensor State) Step(Tensor q, Tensor k, Tensor v, Tensor g, Tensor state, double scale) =>
        GlaRecurrent.Step(q, k, v, g.unsqueeze(-1).expand_as(k), state, scale);

    /// <summary>Naive loop: <c>q, k [B, T, H, K]</c>, <c>v [B, T, H, V]</c>, <c>g [B, T, H]</c>; float32 outputs.</summary>
    public static (Tensor Output, Tensor FinalState) Forward(Tensor q, Tensor k, Tensor v, Tensor g, double scale,
        Tensor? initialState = null) =>
        GlaRecurrent.Forward(q, k, v, g.unsqueeze(-1).expand_as(k), scale, initialState);
}
