using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Matrix × matrix for prefill: <c>y[t, r] = Σ_c W[r, c] · x[t, c]</c> over a block of rows and many tokens. Unlike
/// decoding, this is compute-bound, so the work is arranged for the FMA units rather than for one pass over memory:
/// a block of <see cref="BlockRows"/> rows is first widened to float32 in a per-thread buffer (bfloat16 and Q8 are
/// expanded once per block and reused for every token — the arithmetic stays float32, as in decoding), then tiles of
/// 2 rows × <see cref="TokenTile"/> tokens keep 16 accumulators in registers: per 16 columns, 2 weight loads and 8
/// activation loads feed 16 FMAs. The depth is cut into slices of at most <see cref="MaxDepth"/> columns so a tile's
/// activations (8 × 2 KiB) stay in a 32 KiB L1 (Zen 4's) beside the two rows streaming through it. AVX-512 only; other ISAs fall back to
/// <see cref="MatVec"/>. The naive twin is <see cref="NaiveMatVec"/>.
/// </summary>
public static unsafe class MatMat
{
    /// <summary>Rows per work unit: the unit a thread claims, and the rows widened to float32 at once.</summary>
    public const int BlockRows = 16;

    /// <summary>Tokens per register tile.</summary>
    public const int TokenTile = 8;

    /// <summary>Largest depth slice (columns) accumulated in registers before the partial sums go to memory.</summary>
    public const int MaxDepth = 512;

    [ThreadStatic]
    private static float[]? t_widened;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times <paramref name="count"/> vectors at <paramref name="x"/> (stride
    /// <paramref name="xStride"/>), written to <paramref name="y"/> at <c>t · yStride + r</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, int r0, int r1, KernelIsa isa)
    {
        if (isa != KernelIsa.Avx512)
        {
            MatVec.Rows(w, x, xStride, count, y, yStride, r0, r1, isa, batchInvariant: true);
            return;
        }

        int cols = w.Cols;
        for (int b0 = r0; b0 < r1; b0 += BlockRows)
        {
            int b1 = Math.Min(r1, b0 + BlockRows);
            if (w.Format == WeightFormat.Float32)
            {
                Block(w.F32 + (long)b0 * cols, b1 - b0, cols, x, xStride, count, y + b0, yStride);
                continue;
            }

            var widened = t_widened;
            if (widened is null || widened.Length < BlockRows * cols)
                t_widened = widened = new float[BlockRows * cols];
            for (int r = b0; r < b1; r++)
                w.DequantizeRow(r, widened.AsSpan((r - b0) * cols, cols));
            fixed (float* rows = widened)
                Block(rows, b1 - b0, cols, x, xStride, count, y + b0, yStride);
        }
    }

    /// <summary><paramref name="n"/> float32 rows <c>[n, cols]</c> at <paramref name="rows"/> times every token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block(float* rows, int n, int cols, float* x, int xStride, int count, float* y, int yStride)
    {
        int slices = (cols + MaxDepth - 1) / MaxDepth;
        var xs = stackalloc float*[TokenTile];
        for (int s = 0; s < slices; s++)
        {
            // Equal slices, each a multiple of 16 columns except the last.
            int c0 = (int)((long)cols * s / slices) & ~15, c1 = s == slices - 1 ? cols : (int)((long)cols * (s + 1) / slices) & ~15;
            bool accumulate = s > 0;
            for (int t0 = 0; t0 < count; t0 += TokenTile)
            {
                int tokens = Math.Min(TokenTile, count - t0);
                for (int j = 0; j < TokenTile; j++)
                    xs[j] = x + (long)(t0 + (j < tokens ? j : 0)) * xStride + c0;
                for (int r = 0; r < n; r += 2)
                {
                    float* a = rows + (long)r * cols + c0;
                    float* b = r + 1 < n ? a + cols : a;
                    Tile(a, b, xs, c1 - c0, y + (long)t0 * yStride + r, yStride, tokens, r + 1 < n, accumulate);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile(float* wa, float* wb, float** x, int depth, float* y, int yStride, int tokens, bool two, bool accumulate)
    {
        float* x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5], x6 = x[6], x7 = x[7];
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        int i = 0;
        for (; i + 16 <= depth; i += 16)
        {
            var va = Vector512.Load(wa + i);
            var vb = Vector512.Load(wb + i);
            var v = Vector512.Load(x0 + i);
            a0 = Vector512.FusedMultiplyAdd(va, v, a0);
            b0 = Vector512.FusedMultiplyAdd(vb, v, b0);
            v = Vector512.Load(x1 + i);
            a1 = Vector512.FusedMultiplyAdd(va, v, a1);
            b1 = Vector512.FusedMultiplyAdd(vb, v, b1);
            v = Vector512.Load(x2 + i);
            a2 = Vector512.FusedMultiplyAdd(va, v, a2);
            b2 = Vector512.FusedMultiplyAdd(vb, v, b2);
            v = Vector512.Load(x3 + i);
            a3 = Vector512.FusedMultiplyAdd(va, v, a3);
            b3 = Vector512.FusedMultiplyAdd(vb, v, b3);
            v = Vector512.Load(x4 + i);
            a4 = Vector512.FusedMultiplyAdd(va, v, a4);
            b4 = Vector512.FusedMultiplyAdd(vb, v, b4);
            v = Vector512.Load(x5 + i);
            a5 = Vector512.FusedMultiplyAdd(va, v, a5);
            b5 = Vector512.FusedMultiplyAdd(vb, v, b5);
            v = Vector512.Load(x6 + i);
            a6 = Vector512.FusedMultiplyAdd(va, v, a6);
            b6 = Vector512.FusedMultiplyAdd(vb, v, b6);
            v = Vector512.Load(x7 + i);
            a7 = Vector512.FusedMultiplyAdd(va, v, a7);
            b7 = Vector512.FusedMultiplyAdd(vb, v, b7);
        }

        var sa = Reduce8(a0, a1, a2, a3, a4, a5, a6, a7);
        var sb = Reduce8(b0, b1, b2, b3, b4, b5, b6, b7);
        if (i < depth)
        {
            // The columns past the last full vector (only where a row's length is not a multiple of 16).
            for (int j = 0; j < tokens; j++)
            {
                float ta = 0, tb = 0;
                for (int c = i; c < depth; c++)
                {
                    ta += wa[c] * x[j][c];
                    tb += wb[c] * x[j][c];
                }

                sa = sa.WithElement(j, sa.GetElement(j) + ta);
                sb = sb.WithElement(j, sb.GetElement(j) + tb);
            }
        }

        for (int j = 0; j < tokens; j++)
        {
            float* yj = y + (long)j * yStride;
            if (accumulate)
            {
                yj[0] += sa.GetElement(j);
                if (two)
                    yj[1] += sb.GetElement(j);
            }
            else
            {
                yj[0] = sa.GetElement(j);
                if (two)
                    yj[1] = sb.GetElement(j);
            }
        }
    }

    /// <summary>The horizontal sums of eight vectors as one <c>Vector256</c>: a transpose-and-add tree (each level adds
    /// halves of two vectors at once), 7 adds of pairs instead of 8 full reductions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Reduce8(Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3,
        Vector512<float> v4, Vector512<float> v5, Vector512<float> v6, Vector512<float> v7)
    {
        // 512 → 256 per vector.
        var h0 = v0.GetLower() + v0.GetUpper();
        var h1 = v1.GetLower() + v1.GetUpper();
        var h2 = v2.GetLower() + v2.GetUpper();
        var h3 = v3.GetLower() + v3.GetUpper();
        var h4 = v4.GetLower() + v4.GetUpper();
        var h5 = v5.GetLower() + v5.GetUpper();
        var h6 = v6.GetLower() + v6.GetUpper();
        var h7 = v7.GetLower() + v7.GetUpper();
        // Pairwise within 128-bit lanes: hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7].
        var p01 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(h0, h1);
        var p23 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(h2, h3);
        var p45 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(h4, h5);
        var p67 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(h6, h7);
        // [s0, s1, s2, s3 | s0', s1', s2', s3'] for vectors 0–3, and likewise 4–7 (two half-sums per lane).
        var q0123 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(p01, p23);
        var q4567 = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(p45, p67);
        // Add the two 128-bit halves: lower = vectors 0–3, upper = vectors 4–7.
        var lo = System.Runtime.Intrinsics.X86.Avx.Permute2x128(q0123, q4567, 0x20);
        var hi = System.Runtime.Intrinsics.X86.Avx.Permute2x128(q0123, q4567, 0x31);
        return lo + hi;
    }
}
