using Linearize.Caching;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using Linearize.Tensors;
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

    /// <summary>
    /// The window branch of a Liger layer with a sparse global cache (LoLA; docs/METHODS.md §1.7). Post-RoPE
    /// <paramref name="q"/> <c>[B, H, T, D]</c>, <paramref name="k"/>, <paramref name="v"/> <c>[B, H_kv, T, D]</c>; the new
    /// pairs' recall errors <paramref name="errors"/> <c>[B, T, H_kv]</c>. The selection is sequential, so it is
    /// simulated token by token on the CPU (<see cref="SparseCacheRule.Simulate"/>) exactly as stepping would apply
    /// it; every pair that can be a member during the call (the cached slots, the ring, the new tokens) forms a pool
    /// that each query sees through its membership interval. Updates the ring and the sparse cache when given.
    /// Returns <c>[B, H, T, D]</c> float32.
    /// </summary>
    public static Tensor AttendWithSparse(TokenMixer owner, Tensor q, Tensor k, Tensor v, AttentionContext ctx, int window, int capacity,
        LinearLayerCache? cache, Tensor errors)
    {
        long b = q.shape[0], t = q.shape[2], hkv = k.shape[1], d = k.shape[3];
        int ring = window - 1, n = capacity;
        var device = q.device;
        var valid = ctx.KeyPadding?.narrow(1, ctx.KeyPadding.shape[1] - t, t) ?? ones(b, t, dtype: ScalarType.Bool, device: device);
        var context = cache?.Window.Context();
        var sparse = cache?.Sparse;
        long written = cache?.Window.Written ?? 0;

        var slotKeys = sparse?.Keys ?? zeros(new long[] { b, hkv, n, d }, k.dtype, device);
        var slotValues = sparse?.Values ?? zeros(new long[] { b, hkv, n, d }, v.dtype, device);
        var slotIndex = sparse?.Index ?? TorchArithmetic.Full(new long[] { b, hkv, n }, -1, ScalarType.Int64).to(device);
        var slotScore = sparse?.Score ?? zeros(new long[] { b, hkv, n }, ScalarType.Float32, device);
        var ringKeys = context?.Keys ?? zeros(new long[] { b, hkv, ring, d }, k.dtype, device);
        var ringValues = context?.Values ?? zeros(new long[] { b, hkv, ring, d }, v.dtype, device);
        var ringValid = context?.Valid ?? zeros(new long[] { b, ring }, ScalarType.Bool, device);
        var ringScore = sparse?.RingScore ?? zeros(new long[] { b, hkv, ring }, ScalarType.Float32, device);
        var newScore = errors.permute(0, 2, 1).contiguous(); // [B, H_kv, T]

        static T[] Host<T>(Tensor x) where T : unmanaged => x.cpu().contiguous().data<T>().ToArray();
        var selection = SparseCacheRule.Simulate((int)b, (int)hkv, n, ring, written, (int)t,
            Host<long>(slotIndex), Host<float>(slotScore), Host<float>(ringScore), Host<bool>(ringValid),
            Host<float>(newScore), Host<bool>(valid));
        long pool = selection.Pool;
        var poolKeys = cat(new[] { slotKeys, ringKeys.to(k.dtype), k }, 2);    // [B, H_kv, P, D]
        var poolValues = cat(new[] { slotValues, ringValues.to(v.dtype), v }, 2);
        var enter = tensor(selection.Enter, new long[] { b, hkv, pool }, device: device);
        var exit = tensor(selection.Exit, new long[] { b, hkv, pool }, device: device);

        var y = SlidingWindowSoftmax.Forward(q, k, v, ctx.PositionIds, valid, window, 0, context, (poolKeys, poolValues, enter, exit));

        if (cache is not null)
        {
            using var noGrad = no_grad();
            var slotOwner = tensor(selection.SlotPool, new long[] { b, hkv, n }, device: device);
            var gather = slotOwner.ClampMin(0L).unsqueeze(-1).expand(b, hkv, n, d);
            var newRingScore = ringScore.clone();
            long keep = Math.Min(t, ring);
            var slots = TorchArithmetic.Arange(written + t - keep, written + t, ScalarType.Int64, device).Mod(ring);
            newRingScore.index_copy_(2, slots, newScore.narrow(2, t - keep, keep));
            var filled = slotOwner.Ge(0).unsqueeze(-1); // empty slots hold zeros, as the engine's
            cache.Sparse!.Set(poolKeys.gather(2, gather).MaskedFill(filled.logical_not(), 0), poolValues.gather(2, gather).MaskedFill(filled.logical_not(), 0),
                tensor(selection.SlotIndex, new long[] { b, hkv, n }, device: device),
                tensor(selection.SlotScore, new long[] { b, hkv, n }, device: device), newRingScore);
            cache.Window.Append(k, v, ctx.PositionIds, valid);
        }

        return y;
    }
}
