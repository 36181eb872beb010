// Repeats by design (what `duplicates` lists here): the tile's 2 rows × 4 tokens are spelled out as 8 named
// accumulators, because the JIT keeps locals — not array elements — in registers, and it does not unroll.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// The managed register tile of <see cref="MatMulBFloat16"/> on CPUs without AVX512-BF16: two bfloat16 weight rows ×
/// four bfloat16 activation rows, each of the eight dot products summed exactly as <see cref="BFloat16Dot.Dot"/> sums
/// one (so the tile gives the twin's bits, whatever the batch). Each loaded weight vector is split into its odd and even
/// halves once and feeds four tokens; the tokens come split already (<see cref="BFloat16Activations.Split"/>), so each
/// pair of their vectors is a plain load feeding both rows — where a dot product at a time splits both for every pair.
/// </summary>
/// <remarks>
/// <see cref="BFloat16Dot"/>'s lanes 0–7 take columns <c>32k .. 32k+15</c> of every block and lanes 8–15 columns
/// <c>32k+16 .. 32k+31</c>, two independent chains: the tile runs them as two passes, so each pass holds 8
/// accumulators, 4 split weight vectors and the mask in registers, with the activations as memory operands.
/// </remarks>
internal static unsafe class BFloat16Tile2x4
{
    public const int Rows = 2;
    public const int Tokens = 4;

    /// <summary>
    /// <c>sums[j · 2 + i] = Σ_c w_i[c] · x_j[c]</c> for rows <paramref name="wa"/>, <paramref name="wb"/> and the four
    /// split activation rows <paramref name="x"/> (<see cref="BFloat16Activations.Split"/>, zero-padded to whole blocks)
    /// over <paramref name="cols"/> columns, in <see cref="BFloat16Dot"/>'s order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot(ushort* wa, ushort* wb, float** x, int cols, float* sums)
    {
        const int block = BFloat16Dot.Block, half = block / 2;
        int full = cols / block * block;
        // The weights' partial last block, zero-padded as BFloat16Dot pads it (the activations are padded already).
        var pad = stackalloc ushort[2 * block];
        bool tail = full < cols;
        if (tail)
        {
            new Span<ushort>(pad, 2 * block).Clear();
            new ReadOnlySpan<ushort>(wa + full, cols - full).CopyTo(new Span<ushort>(pad, block));
            new ReadOnlySpan<ushort>(wb + full, cols - full).CopyTo(new Span<ushort>(pad + block, block));
        }

        var lo = stackalloc Vector256<float>[Rows * Tokens];
        var hi = stackalloc Vector256<float>[Rows * Tokens];
        Pass(wa, wb, x, full, tail ? pad : null, 0, lo);
        Pass(wa, wb, x, full, tail ? pad : null, half, hi);
        for (int j = 0; j < Tokens; j++)
            for (int i = 0; i < Rows; i++)
            {
                // BFloat16Dot's reduction tree over the 16 lanes (lo = lanes 0–7, hi = lanes 8–15).
                var s = lo[i * Tokens + j] + hi[i * Tokens + j];
                var c = s.GetLower() + s.GetUpper();
                sums[j * Rows + i] = (c.GetElement(0) + c.GetElement(2)) + (c.GetElement(1) + c.GetElement(3));
            }
    }

    /// <summary>
    /// One half of every block (columns <c>32k + offset .. 32k + offset + 15</c>) for all eight dot products, into
    /// <paramref name="result"/> (row-major: <c>i · 4 + j</c>): over the <paramref name="full"/> whole-block columns, then
    /// the partial block with the weights from <paramref name="pad"/> when it is given. Per pair of values each lane
    /// adds the odd (high) product first, then the even (low) one, as <c>vdpbf16ps</c> does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pass(ushort* wa, ushort* wb, float** x, int full, ushort* pad, int offset, Vector256<float>* result)
    {
        const int block = BFloat16Dot.Block;
        var mask = Vector256.Create(0xFFFF0000u);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        float* x0 = x[0] + offset, x1 = x[1] + offset, x2 = x[2] + offset, x3 = x[3] + offset;
        ushort* ra = wa + offset, rb = wb + offset;
        int k = 0, end = full;
        for (int segment = 0; segment < 2; segment++)
        {
            for (; k < end; k += block)
            {
                var va = Vector256.Load((uint*)(ra + k));
                var vb = Vector256.Load((uint*)(rb + k));
                var ah = (va & mask).AsSingle();
                var al = (va << 16).AsSingle();
                var bh = (vb & mask).AsSingle();
                var bl = (vb << 16).AsSingle();
                a0 = Vector256.FusedMultiplyAdd(al, Vector256.Load(x0 + k + 8), Vector256.FusedMultiplyAdd(ah, Vector256.Load(x0 + k), a0));
                b0 = Vector256.FusedMultiplyAdd(bl, Vector256.Load(x0 + k + 8), Vector256.FusedMultiplyAdd(bh, Vector256.Load(x0 + k), b0));
                a1 = Vector256.FusedMultiplyAdd(al, Vector256.Load(x1 + k + 8), Vector256.FusedMultiplyAdd(ah, Vector256.Load(x1 + k), a1));
                b1 = Vector256.FusedMultiplyAdd(bl, Vector256.Load(x1 + k + 8), Vector256.FusedMultiplyAdd(bh, Vector256.Load(x1 + k), b1));
                a2 = Vector256.FusedMultiplyAdd(al, Vector256.Load(x2 + k + 8), Vector256.FusedMultiplyAdd(ah, Vector256.Load(x2 + k), a2));
                b2 = Vector256.FusedMultiplyAdd(bl, Vector256.Load(x2 + k + 8), Vector256.FusedMultiplyAdd(bh, Vector256.Load(x2 + k), b2));
                a3 = Vector256.FusedMultiplyAdd(al, Vector256.Load(x3 + k + 8), Vector256.FusedMultiplyAdd(ah, Vector256.Load(x3 + k), a3));
                b3 = Vector256.FusedMultiplyAdd(bl, Vector256.Load(x3 + k + 8), Vector256.FusedMultiplyAdd(bh, Vector256.Load(x3 + k), b3));
            }

            if (pad == null)
                break;
            // The partial block: the weights from the padded copies, at the same k as the activations.
            ra = pad + offset - full;
            rb = pad + block + offset - full;
            end = full + block;
            pad = null;
        }

        result[0] = a0;
        result[1] = a1;
        result[2] = a2;
        result[3] = a3;
        result[4] = b0;
        result[5] = b1;
        result[6] = b2;
        result[7] = b3;
    }
}
