using Linearize.Caching;
using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>
/// What every token mixer of one forward pass shares, computed once by the model.
/// </summary>
/// <param name="PositionIds">Absolute positions of the new tokens, <c>[B, T]</c> int64.</param>
/// <param name="Cos">RoPE cosines for those positions, <c>[B, 1, T, D]</c> in the compute dtype.</param>
/// <param name="Sin">RoPE sines, same shape.</param>
/// <param name="PastLength">Tokens already in <paramref name="Cache"/> before this call (0 without a cache).</param>
/// <param name="KeyPadding">Which key positions are real tokens, <c>[B, PastLength + T]</c> bool; null when no position is padding.</param>
/// <param name="Cache">The decoding cache to read and extend, or null for a stateless (training / scoring) pass.</param>
public sealed record AttentionContext(
    Tensor PositionIds,
    Tensor Cos,
    Tensor Sin,
    long PastLength,
    Tensor? KeyPadding,
    ModelCache? Cache);
