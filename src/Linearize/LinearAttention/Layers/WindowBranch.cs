using Linearize.Caching;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>The sliding-window softmax branch shared by <see cref="SlidingWindowAttention"/> and <see cref="LigerAttention"/>.</summary>
internal static class WindowBranch
{
    /// <summary>
    /// Post-RoPE <paramref name="q"/> <c>[B, H, T, D]</c>, <paramref name="k"/>, <paramref name="v"/> <c>[B, H_kv, T, D]</c>;
    /// reads the cached window (if any) as context, then records the new keys. Returns <c>[B, H, T, D]</c> float32.
    /// </summary>
    public static Tensor Attend(TokenMixer owner, Tensor q, Tensor k, Tensor v, AttentionContext ctx, int window, int sinks,
        WindowKvCache? cache)
    {
        long b = q.shape[0], t = q.shape[2];
        if (sinks > 0 && ctx.KeyPadding is not null)
            throw new LinearizeException($"layer {owner.LayerIndex}: attention sinks with padded batches are not supported");
        var valid = ctx.KeyPadding?.narrow(1, ctx.KeyPadding.shape[1] - t, t);
        var y = SlidingWindowSoftmax.Forward(q, k, v, ctx.PositionIds, valid, window, sinks, cache?.Context());
        cache?.Append(k, v, ctx.PositionIds, valid ?? ones(b, t, dtype: ScalarType.Bool, device: q.device));
        return y;
    }
}
