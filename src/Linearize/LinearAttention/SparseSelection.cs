namespace Linearize.LinearAttention;

/// <summary>
/// What <see cref="SparseCacheRule.Simulate"/> decided for one call over T tokens, per (batch row, KV head): for every
/// pool entry (the N sparse slots as they were, the window ring's slots, the T new tokens) the call-relative query
/// indices <c>[enter, exit)</c> that see it, and the slots afterwards. Arrays are flattened row-major:
/// <see cref="Enter"/>, <see cref="Exit"/> <c>[B, H_kv, P]</c> with <c>P = N + ring + T</c>; <see cref="SlotPool"/> (the
/// pool entry each slot now holds, −1 = empty), <see cref="SlotIndex"/>, <see cref="SlotScore"/> <c>[B, H_kv, N]</c>.
/// </summary>
public sealed record SparseSelection(int Pool, long[] Enter, long[] Exit, long[] SlotPool, long[] SlotIndex, float[] SlotScore);
