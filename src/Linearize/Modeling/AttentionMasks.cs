using TorchSharp;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>Boolean "may attend" masks for causal attention over a cache.</summary>
public static class AttentionMasks
{
    /// <summary>
    /// Query <c>i</c> (absolute position <c>past + i</c>) may attend key <c>j</c> when <c>j ≤ past + i</c>, the key is not
    /// padding, and, with a <paramref name="window"/>, <c>j &gt; past + i − window</c> (the query plus window−1 earlier keys).
    /// Returns <c>[B or 1, 1, T, S]</c> bool.
    /// </summary>
    public static Tensor Causal(long past, long queries, long keys, Tensor? keyPadding, int? window, Device device)
    {
        using var scope = NewDisposeScope();
        var qPos = TorchArithmetic.Arange(past, past + queries, ScalarType.Int64, device).unsqueeze(1); // [T, 1]
        var kPos = TorchArithmetic.Arange(keys, ScalarType.Int64, device).unsqueeze(0);                 // [1, S]
        var allowed = kPos <= qPos;
        if (window is int w)
            allowed = allowed.logical_and(kPos > qPos.Minus(w));

        var mask = allowed.unsqueeze(0).unsqueeze(0); // [1, 1, T, S]
        if (keyPadding is not null)
            mask = mask.logical_and(keyPadding.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1));
        return mask.MoveToOuterDisposeScope();
    }
}
