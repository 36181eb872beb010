using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Ops;

/// <summary>Padding a time axis to whole chunks and folding it into <c>[B, H, N, C, D]</c>.</summary>
internal static class ChunkLayout
{
    /// <summary><c>[B, T, H, D] → [B, H, N, C, D]</c> float32, zero-padded at the end to <c>N·C ≥ T</c>.</summary>
    /// <remarks>Zero padding is exact for the outputs kept: a padded step has k = 0 (adds nothing) and g = 0 (no
    /// decay), so it changes neither earlier outputs nor the final state.</remarks>
    public static Tensor Fold(Tensor x, long chunk)
    {
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], d = x.shape[3];
        long n = (t + chunk - 1) / chunk;
        var y = x.to(ScalarType.Float32).transpose(1, 2);
        if (n * chunk != t)
            y = nn.functional.pad(y, new long[] { 0, 0, 0, n * chunk - t });
        return y.reshape(b, h, n, chunk, d);
    }

    /// <summary><c>[B, H, N, C, D] → [B, T, H, D]</c>, dropping the padding.</summary>
    public static Tensor Unfold(Tensor x, long t)
    {
        long b = x.shape[0], h = x.shape[1], d = x.shape[4];
        return x.reshape(b, h, -1, d).narrow(2, 0, t).transpose(1, 2);
    }

    /// <summary>
    /// The sequential part of a chunked linear recurrence: for each chunk c, output
    /// <c>qDecayed_c · S + intra_c</c>, then <c>S ← S ⊙ chunkDecay_c + kToEnd_cᵀ · v_c</c>. Inputs are <c>[B, H, N, C, *]</c>
    /// (<paramref name="chunkDecay"/> broadcastable to the state); returns outputs <c>[B, H, N, C, V]</c> and the final state.
    /// </summary>
    public static (Tensor Outputs, Tensor State) Scan(Tensor qDecayed, Tensor kToEnd, Tensor v, Tensor chunkDecay, Tensor intra, Tensor state)
    {
        long n = qDecayed.shape[2];
        var outputs = new List<Tensor>((int)n);
        for (long c = 0; c < n; c++)
        {
            outputs.Add(qDecayed.select(2, c).matmul(state).Plus(intra.select(2, c)));
            state = (state * chunkDecay.select(2, c)).Plus(kToEnd.select(2, c).transpose(-2, -1).matmul(v.select(2, c)));

        }

        return (stack(outputs, 2), state);
    }

    /// <summary>A <c>[C, C]</c> bool mask, true where key j may be read by query i (j ≤ i).</summary>
    public static Tensor Causal(long c, Device device) => ones(c, c, dtype: ScalarType.Bool, device: device).tril();
}
