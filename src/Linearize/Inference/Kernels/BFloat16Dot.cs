using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// The arithmetic of a bfloat16 × bfloat16 dot product as AVX512-BF16's <c>vdpbf16ps</c> does it, stated once: 16 float32
/// lanes; for each 32-column block k in order, lane i first adds <c>w[32k+2i+1] · x[32k+2i+1]</c>, then
/// <c>w[32k+2i] · x[32k+2i]</c>, each rounded to nearest even (Intel SDM, VDPBF16PS); columns past the end of a
/// partial last block count as zeros; then the lanes are summed by one tree, <c>b[i] = a[i] + a[i+8]</c>,
/// <c>c[i] = b[i] + b[i+4]</c>, <c>d[i] = c[i] + c[i+2]</c>, <c>s = d[0] + d[1]</c>. The native tiles
/// (<see cref="Native.NativeBFloat16Tiles"/>) follow it instruction by instruction; <see cref="Dot"/> (vectors, the
/// fallback on CPUs without AVX512-BF16) and <see cref="Scalar"/> (the naive twin in tests) follow it in managed code.
/// </summary>
/// <remarks>
/// Why a fused multiply-add reproduces each step: a product of two bfloat16 (8-bit significands) has at most 16
/// significant bits, so it is exact in float32 and <c>acc + p</c> rounded once is <c>fma(w, x, acc)</c>. The instruction
/// also treats denormal inputs as zero and flushes denormal results to zero (DAZ/FTZ) where an FMA keeps them, and a
/// product below float32's normal range (both factors under about 1e-19) is not exact: the two differ only there,
/// far from the activations and weights of a language model. Checked on Zen 4: 3.2 million random lanes (normal
/// values over 2^±20) give the same bits as odd-then-even FMAs, and 5 % differ with even-then-odd.
/// </remarks>
public static unsafe class BFloat16Dot
{
    /// <summary>Columns per block: one 512-bit register of bfloat16.</summary>
    public const int Block = 32;

    /// <summary>The dot product of <paramref name="cols"/> bfloat16 at <paramref name="w"/> and <paramref name="x"/>,
    /// in the lane order above, with 256-bit vectors (lanes 0–7 and 8–15 as two halves), so it runs on AVX2 too.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(ushort* w, ushort* x, int cols)
    {
        Vector256<float> lo = Vector256<float>.Zero, hi = Vector256<float>.Zero;
        int k = 0;
        for (; k + Block <= cols; k += Block)
        {
            // Lanes 0–7 take columns k..k+15, lanes 8–15 columns k+16..k+31: each uint is an (even, odd) pair.
            lo = Step(Vector256.Load((uint*)(w + k)), Vector256.Load((uint*)(x + k)), lo);
            hi = Step(Vector256.Load((uint*)(w + k + 16)), Vector256.Load((uint*)(x + k + 16)), hi);
        }

        if (k < cols)
        {
            // The partial last block, zero-padded as the native tile's masked loads read it.
            var wb = stackalloc ushort[Block];
            var xb = stackalloc ushort[Block];
            new Span<ushort>(wb, Block).Clear();
            new Span<ushort>(xb, Block).Clear();
            new ReadOnlySpan<ushort>(w + k, cols - k).CopyTo(new Span<ushort>(wb, Block));
            new ReadOnlySpan<ushort>(x + k, cols - k).CopyTo(new Span<ushort>(xb, Block));
            lo = Step(Vector256.Load((uint*)wb), Vector256.Load((uint*)xb), lo);
            hi = Step(Vector256.Load((uint*)(wb + 16)), Vector256.Load((uint*)(xb + 16)), hi);
        }

        var c = (lo + hi).GetLower() + (lo + hi).GetUpper();
        return (c.GetElement(0) + c.GetElement(2)) + (c.GetElement(1) + c.GetElement(3));
    }

    /// <summary>
    /// <see cref="Dot"/> of four weight rows with one activation row, each result exactly <see cref="Dot"/>'s, into
    /// <c>result[0..4)</c>. One dot product is two chains of two dependent FMAs per block — bound by FMA latency, about
    /// half the rate of a widened float32 row on AVX2 — so decoding runs four rows' chains side by side and splits each
    /// activation block once for all four.
    /// </summary>
    /// <remarks>The four rows are read as four interleaved streams a row long, which the hardware prefetcher follows
    /// poorly (the next lines arrive late). Two remedies, for two row lengths (<see cref="MatMulBFloat16"/> picks):
    /// <paramref name="prefetch"/>, when given, is where the next rows start, and each block step prefetches as many
    /// bytes of them as it reads of its own — right for short rows, wrong once the next group no longer fits beside
    /// this one in L1; <paramref name="streamAhead"/>, when positive, has each step prefetch every row's own stream
    /// that many bytes ahead instead.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4Rows(ushort* w0, ushort* w1, ushort* w2, ushort* w3, ushort* x, int cols, float* result, byte* prefetch = null,
        int streamAhead = 0)
    {
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> l0 = default, l1 = default, l2 = default, l3 = default;
        Vector256<float> h0 = default, h1 = default, h2 = default, h3 = default;
        int full = cols / Block * Block;
        // The partial last block, zero-padded as Dot pads it: the activations and the four rows.
        var pad = stackalloc ushort[5 * Block];
        if (full < cols)
        {
            new Span<ushort>(pad, 5 * Block).Clear();
            new ReadOnlySpan<ushort>(x + full, cols - full).CopyTo(new Span<ushort>(pad, Block));
            new ReadOnlySpan<ushort>(w0 + full, cols - full).CopyTo(new Span<ushort>(pad + Block, Block));
            new ReadOnlySpan<ushort>(w1 + full, cols - full).CopyTo(new Span<ushort>(pad + 2 * Block, Block));
            new ReadOnlySpan<ushort>(w2 + full, cols - full).CopyTo(new Span<ushort>(pad + 3 * Block, Block));
            new ReadOnlySpan<ushort>(w3 + full, cols - full).CopyTo(new Span<ushort>(pad + 4 * Block, Block));
        }

        int end = full;
        for (int k = 0, segment = 0; segment < 2; segment++)
        {
            for (; k < end; k += Block)
            {
                if (prefetch != null)
                {
                    // 4 rows × 64 bytes read per step: 4 lines of the next rows.
                    Sse.Prefetch0(prefetch);
                    Sse.Prefetch0(prefetch + 64);
                    Sse.Prefetch0(prefetch + 128);
                    Sse.Prefetch0(prefetch + 192);
                    prefetch += 256;
                }
                else if (streamAhead > 0)
                {
                    // Each row reads 64 bytes per step: one line of each stream, streamAhead bytes on.
                    Sse.Prefetch0((byte*)(w0 + k) + streamAhead);
                    Sse.Prefetch0((byte*)(w1 + k) + streamAhead);
                    Sse.Prefetch0((byte*)(w2 + k) + streamAhead);
                    Sse.Prefetch0((byte*)(w3 + k) + streamAhead);
                }

                var xl = Vector256.Load((uint*)(x + k));
                var xh = Vector256.Load((uint*)(x + k + 16));
                var xlOdd = (xl & high).AsSingle();
                var xlEven = (xl << 16).AsSingle();
                var xhOdd = (xh & high).AsSingle();
                var xhEven = (xh << 16).AsSingle();
                l0 = Step(Vector256.Load((uint*)(w0 + k)), xlOdd, xlEven, l0);
                h0 = Step(Vector256.Load((uint*)(w0 + k + 16)), xhOdd, xhEven, h0);
                l1 = Step(Vector256.Load((uint*)(w1 + k)), xlOdd, xlEven, l1);
                h1 = Step(Vector256.Load((uint*)(w1 + k + 16)), xhOdd, xhEven, h1);
                l2 = Step(Vector256.Load((uint*)(w2 + k)), xlOdd, xlEven, l2);
                h2 = Step(Vector256.Load((uint*)(w2 + k + 16)), xhOdd, xhEven, h2);
                l3 = Step(Vector256.Load((uint*)(w3 + k)), xlOdd, xlEven, l3);
                h3 = Step(Vector256.Load((uint*)(w3 + k + 16)), xhOdd, xhEven, h3);
            }

            if (full == cols)
                break;
            prefetch = null;
            streamAhead = 0;
            // The partial block from the padded copies, at the same k.
            x = pad - full;
            w0 = pad + Block - full;
            w1 = pad + 2 * Block - full;
            w2 = pad + 3 * Block - full;
            w3 = pad + 4 * Block - full;
            end = full + Block;
            full = cols; // one more block, then stop
        }

        result[0] = Reduce(l0, h0);
        result[1] = Reduce(l1, h1);
        result[2] = Reduce(l2, h2);
        result[3] = Reduce(l3, h3);
    }

    /// <summary>One row's <c>vdpbf16ps</c> step on eight lanes with the activations already split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<uint> w, Vector256<float> xOdd, Vector256<float> xEven, Vector256<float> acc)
    {
        acc = Vector256.FusedMultiplyAdd((w & Vector256.Create(0xFFFF0000u)).AsSingle(), xOdd, acc);
        return Vector256.FusedMultiplyAdd((w << 16).AsSingle(), xEven, acc);
    }

    /// <summary>The lane tree of the class remarks over lanes 0–7 (<paramref name="lo"/>) and 8–15 (<paramref name="hi"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Reduce(Vector256<float> lo, Vector256<float> hi)
    {
        var c = (lo + hi).GetLower() + (lo + hi).GetUpper();
        return (c.GetElement(0) + c.GetElement(2)) + (c.GetElement(1) + c.GetElement(3));
    }

    /// <summary>One <c>vdpbf16ps</c> on eight lanes: the odd (high) halves of each pair first, then the even (low) ones.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<uint> w, Vector256<uint> x, Vector256<float> acc)
    {
        var high = Vector256.Create(0xFFFF0000u);
        acc = Vector256.FusedMultiplyAdd((w & high).AsSingle(), (x & high).AsSingle(), acc);
        return Vector256.FusedMultiplyAdd((w << 16).AsSingle(), (x << 16).AsSingle(), acc);
    }

    /// <summary>The same dot product element by element: the naive twin that tests hold the native tiles and
    /// <see cref="Dot"/> to, bit for bit.</summary>
    public static float Scalar(ReadOnlySpan<ushort> w, ReadOnlySpan<ushort> x)
    {
        if (w.Length != x.Length)
            throw new ArgumentException($"a dot product of {w.Length} and {x.Length} values");
        int cols = w.Length;
        var lane = new float[16];
        for (int k = 0; k < cols; k += Block)
            for (int i = 0; i < 16; i++)
            {
                int odd = k + 2 * i + 1, even = k + 2 * i;
                lane[i] = MathF.FusedMultiplyAdd(At(w, odd), At(x, odd), lane[i]);
                lane[i] = MathF.FusedMultiplyAdd(At(w, even), At(x, even), lane[i]);
            }

        var b = new float[8];
        for (int i = 0; i < 8; i++)
            b[i] = lane[i] + lane[i + 8];
        float c0 = b[0] + b[4], c1 = b[1] + b[5], c2 = b[2] + b[6], c3 = b[3] + b[7];
        return (c0 + c2) + (c1 + c3);
    }

    private static float At(ReadOnlySpan<ushort> v, int i) => i < v.Length ? PackedMatrix.FromBFloat16(v[i]) : 0f;
}
