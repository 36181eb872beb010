namespace Linearize.LinearAttention;

/// <summary>
/// What <see cref="LolcatsSparseRule.Simulate"/> decided for one call of a LoLCATs layer with a sparse cache over T
/// queries, per (batch row, KV head). The pool is the N slots as they were, then the call's E entries (cached window,
/// then new tokens), <c>P = N + E</c>. For every pool entry the call-relative query indices <c>[enter, exit)</c> that see
/// it in the softmax (as a slot member) and the first query index <c>fold</c> from which it is in the linear state
/// (<see cref="long.MaxValue"/>: not folded during the call). Arrays are flattened row-major: <see cref="Enter"/>,
/// <see cref="Exit"/>, <see cref="Fold"/> <c>[B, H_kv, P]</c>; <see cref="SlotPool"/> (the pool entry each slot now holds,
/// −1 = empty), <see cref="SlotIndex"/> (its position), <see cref="SlotScore"/> <c>[B, H_kv, N]</c>; <see cref="State"/>
/// the linear state after the call, <c>[B, H, F, D + 1]</c> float32.
/// </summary>
public sealed record LolcatsSparseSelection(int Pool, long[] Enter, long[] Exit, long[] Fold, long[] SlotPool, long[] SlotIndex,
    float[] SlotScore, float[] State);
