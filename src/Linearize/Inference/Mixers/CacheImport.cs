using System.Runtime.InteropServices;
using Linearize.Caching;
using static TorchSharp.torch;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The hand-over of a TorchSharp layer cache (<c>Caching/</c>) into an engine <see cref="LayerState"/>, shared by every
/// mixer's <see cref="EngineMixer.Import"/>: the cache type check, one batch row of a tensor as float32 values, the
/// valid entries of a window ring with their positions, and a recurrent state checked against the engine's shape. Every
/// failure is a <see cref="LinearizeException"/> starting "layer cache hand-over:". Tensors it makes belong to the
/// caller's dispose scope.
/// </summary>
internal static class CacheImport
{
    /// <summary>Receives one window entry of one KV head: its position and its key and value <c>[D]</c>.</summary>
    public delegate void EntryCopy(int kvHead, long position, ReadOnlySpan<float> key, ReadOnlySpan<float> value);

    public static LinearizeException Error(string message) => new($"layer cache hand-over: {message}");

    /// <summary><paramref name="cache"/> as the type the mixer keeps (<paramref name="what"/>, e.g. "a KV cache").</summary>
    public static T Expect<T>(ILayerCache? cache, string what) where T : class, ILayerCache =>
        cache as T ?? throw Error($"expected {what}, found {cache?.GetType().Name ?? "none"}");

    /// <summary>Batch row <paramref name="row"/> of <paramref name="source"/>, float32, row-major (valid while the
    /// caller's dispose scope lives).</summary>
    public static ReadOnlySpan<float> Floats(Tensor source, int row) =>
        MemoryMarshal.Cast<byte, float>(source[row].to(ScalarType.Float32).contiguous().bytes);

    /// <summary>
    /// Each valid entry of batch row <paramref name="row"/> of a window context (keys, values <c>[B, H_kv, L, D]</c>,
    /// positions and validity <c>[B, L]</c>), per KV head, to <paramref name="copy"/>. Positions must lie in
    /// [<paramref name="oldest"/>, <paramref name="seen"/>): anything else means a padded batch.
    /// </summary>
    public static void WindowEntries((Tensor Keys, Tensor Values, Tensor Positions, Tensor Valid) context, int row, long seen,
        long oldest, int kvHeads, int headDim, EntryCopy copy)
    {
        var keys = Floats(context.Keys, row); // [H_kv, L, D]
        var values = Floats(context.Values, row);
        var positions = context.Positions[row].data<long>().ToArray();
        var valid = context.Valid[row].data<bool>().ToArray();
        int length = positions.Length, d = headDim;
        for (int e = 0; e < length; e++)
        {
            if (!valid[e])
                continue;
            long p = positions[e];
            if (p >= seen || p < oldest)
                throw Error($"window entry at position {p} after {seen} tokens (padded batches are not supported)");
            for (int h = 0; h < kvHeads; h++)
                copy(h, p, keys.Slice((h * length + e) * d, d), values.Slice((h * length + e) * d, d));
        }
    }

    /// <summary>Batch row <paramref name="row"/> of a state tensor into <paramref name="target"/>, after checking it
    /// has the engine's <paramref name="shape"/>. No tensor (nothing seen yet): the target stays zero.</summary>
    public static void State(Tensor? source, int row, long[] shape, FloatBuffer target, string what)
    {
        if (source is null)
            return;
        var t = source[row].to(ScalarType.Float32).contiguous();
        if (!t.shape.SequenceEqual(shape))
            throw Error($"{what} has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", shape)}]");
        MemoryMarshal.Cast<byte, float>(t.bytes).CopyTo(target.AsSpan(0, (int)target.Length));
    }
}
