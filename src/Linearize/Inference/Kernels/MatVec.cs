using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Matrix × vector(s) over a range of rows of a <see cref="PackedMatrix"/>: <c>y[b, r] = Σ_c W[r, c] · x[b, c]</c> for
/// <c>b &lt; count</c>. Decoding is memory-bound (every weight is read once per step), so the kernels stream each row
/// once and, for a batch, multiply it with every vector while it sits in L1 — rows outer, vectors inner, in tiles of
/// four — which is why batch N costs little more than batch 1. Float32 accumulation in vector lanes; the naive twin is
/// <see cref="NaiveMatVec"/>.
/// </summary>
public static unsafe class MatVec
{
    private const int Tile = 4;
    private const int WideTile = 8;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times <paramref name="count"/> vectors at <paramref name="x"/> (stride
    /// <paramref name="xStride"/> floats), written to <paramref name="y"/> at <c>b · yStride + r</c>.
    /// </summary>
    /// <param name="batchInvariant">Compute every vector's dot products exactly as a batch of one would (same
    /// accumulators, same summation order), so a sequence's logits do not depend on what else is in the batch. The
    /// tiled kernels sum in a different order and differ in the last bits, which can flip a greedy argmax on a near
    /// tie. Each row is still read from memory once per step: the vectors after the first find it in L1.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, int r0, int r1, KernelIsa isa,
        bool batchInvariant = false)
    {
        switch (w.Format)
        {
            case WeightFormat.Float32:
                Dense<Float32Rows>(w.F32, sizeof(float), w.Cols, x, xStride, count, y, yStride, r0, r1, isa, batchInvariant);
                break;
            case WeightFormat.BFloat16:
                Dense<BFloat16Rows>(w.Bf16, sizeof(ushort), w.Cols, x, xStride, count, y, yStride, r0, r1, isa, batchInvariant);
                break;
            default:
                Q8(w, x, xStride, count, y, yStride, r0, r1, isa, batchInvariant);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dense<TRow>(void* data, int elementSize, int cols, float* x, int xStride, int count, float* y, int yStride,
        int r0, int r1, KernelIsa isa, bool batchInvariant) where TRow : IRowLoader
    {
        int r = r0;
        if (batchInvariant && count > 1)
        {
            for (; r < r1; r++)
            {
                void* row = (byte*)data + (long)r * cols * elementSize;
                int b = 0;
                if (isa == KernelIsa.Avx512)
                    for (; b + Tile <= count; b += Tile)
                    {
                        float* x0 = x + (long)b * xStride;
                        var s = Dot4x512Invariant<TRow>(row, x0, x0 + xStride, x0 + 2L * xStride, x0 + 3L * xStride, cols);
                        float* yb = y + (long)b * yStride + r;
                        yb[0] = s.GetElement(0);
                        yb[yStride] = s.GetElement(1);
                        yb[2L * yStride] = s.GetElement(2);
                        yb[3L * yStride] = s.GetElement(3);
                    }

                for (; b < count; b++)
                {
                    float* xb = x + (long)b * xStride;
                    y[(long)b * yStride + r] = isa switch
                    {
                        KernelIsa.Avx512 => Dot512<TRow>(row, xb, cols),
                        KernelIsa.Avx2 => Dot256<TRow>(row, xb, cols),
                        _ => DotScalar<TRow>(row, xb, cols),
                    };
                }
            }

            return;
        }

        var xs = stackalloc float*[WideTile];
        if (count > 1 && isa == KernelIsa.Avx512)
        {
            // Two rows × up to eight vectors per pass (16 accumulators): each weight chunk is loaded once for the
            // whole tile and each x chunk feeds both rows — 10 loads per 16 FMAs.
            for (; r + 2 <= r1; r += 2)
            {
                void* rowA = (byte*)data + (long)r * cols * elementSize;
                void* rowB = (byte*)data + (long)(r + 1) * cols * elementSize;
                for (int b0 = 0; b0 < count; b0 += WideTile)
                {
                    int n = Math.Min(WideTile, count - b0);
                    for (int j = 0; j < WideTile; j++)
                        xs[j] = x + (long)(b0 + (j < n ? j : 0)) * xStride;
                    // The next pair is prefetched during the first tile: with 16 FMAs per 64 bytes the loop is slower than
                    // the hardware prefetcher's stride detection expects, and the stream would stall.
                    byte* prefetch = b0 == 0 && r + 4 <= r1 ? (byte*)rowA + 2L * cols * elementSize : null;
                    var (sa, sb) = Dot2x8x512<TRow>(rowA, rowB, xs, cols, prefetch, (long)cols * elementSize);
                    float* ya = y + (long)b0 * yStride + r;
                    for (int j = 0; j < n; j++)
                    {
                        ya[j * (long)yStride] = sa.GetElement(j);
                        ya[j * (long)yStride + 1] = sb.GetElement(j);
                    }
                }
            }
        }

        for (; r < r1; r++)
        {
            void* row = (byte*)data + (long)r * cols * elementSize;
            if (count == 1)
            {
                y[r] = isa switch
                {
                    KernelIsa.Avx512 => Dot512<TRow>(row, x, cols),
                    KernelIsa.Avx2 => Dot256<TRow>(row, x, cols),
                    _ => DotScalar<TRow>(row, x, cols),
                };
                continue;
            }

            for (int b0 = 0; b0 < count; b0 += Tile)
            {
                int n = Math.Min(Tile, count - b0);
                float* x0 = x + (long)b0 * xStride;
                float* x1 = n > 1 ? x0 + xStride : x0, x2 = n > 2 ? x0 + 2L * xStride : x0, x3 = n > 3 ? x0 + 3L * xStride : x0;
                var s = isa switch
                {
                    KernelIsa.Avx512 => Dot4x512<TRow>(row, x0, x1, x2, x3, cols),
                    KernelIsa.Avx2 => Dot4x256<TRow>(row, x0, x1, x2, x3, cols),
                    _ => Dot4Scalar<TRow>(row, x0, x1, x2, x3, cols),
                };
                float* yb = y + (long)b0 * yStride + r;
                yb[0] = s.GetElement(0);
                if (n > 1) yb[yStride] = s.GetElement(1);
                if (n > 2) yb[2L * yStride] = s.GetElement(2);
                if (n > 3) yb[3L * yStride] = s.GetElement(3);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot512<TRow>(void* row, float* x, int n) where TRow : IRowLoader
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 64 <= n; i += 64)
        {
            a0 = Vector512.FusedMultiplyAdd(TRow.Load512(row, i), Vector512.Load(x + i), a0);
            a1 = Vector512.FusedMultiplyAdd(TRow.Load512(row, i + 16), Vector512.Load(x + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(TRow.Load512(row, i + 32), Vector512.Load(x + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(TRow.Load512(row, i + 48), Vector512.Load(x + i + 48), a3);
        }

        for (; i + 16 <= n; i += 16)
            a0 = Vector512.FusedMultiplyAdd(TRow.Load512(row, i), Vector512.Load(x + i), a0);
        float s = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < n; i++)
            s += TRow.Load1(row, i) * x[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot256<TRow>(void* row, float* x, int n) where TRow : IRowLoader
    {
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            a0 = Fma.MultiplyAdd(TRow.Load256(row, i), Vector256.Load(x + i), a0);
            a1 = Fma.MultiplyAdd(TRow.Load256(row, i + 8), Vector256.Load(x + i + 8), a1);
            a2 = Fma.MultiplyAdd(TRow.Load256(row, i + 16), Vector256.Load(x + i + 16), a2);
            a3 = Fma.MultiplyAdd(TRow.Load256(row, i + 24), Vector256.Load(x + i + 24), a3);
        }

        for (; i + 8 <= n; i += 8)
            a0 = Fma.MultiplyAdd(TRow.Load256(row, i), Vector256.Load(x + i), a0);
        float s = Vector256.Sum((a0 + a1) + (a2 + a3));
        for (; i < n; i++)
            s += TRow.Load1(row, i) * x[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotScalar<TRow>(void* row, float* x, int n) where TRow : IRowLoader
    {
        float s = 0;
        for (int i = 0; i < n; i++)
            s += TRow.Load1(row, i) * x[i];
        return s;
    }

    /// <summary>
    /// Four vectors at once, each summed exactly as <see cref="Dot512{TRow}"/> sums one (the same four accumulators
    /// per vector over 64-column blocks, the same 16-column tail and scalar tail, the same final reduction), so the
    /// results are bit-identical to four separate calls while each loaded weight chunk feeds four vectors: 16
    /// accumulators + 4 weight registers fit AVX-512's 32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4x512Invariant<TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n) where TRow : IRowLoader
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int i = 0;
        for (; i + 64 <= n; i += 64)
        {
            var w0 = TRow.Load512(row, i);
            var w1 = TRow.Load512(row, i + 16);
            var w2 = TRow.Load512(row, i + 32);
            var w3 = TRow.Load512(row, i + 48);
            a00 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x0 + i), a00);
            a01 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x0 + i + 16), a01);
            a02 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x0 + i + 32), a02);
            a03 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x0 + i + 48), a03);
            a10 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x1 + i), a10);
            a11 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x1 + i + 16), a11);
            a12 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x1 + i + 32), a12);
            a13 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x1 + i + 48), a13);
            a20 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x2 + i), a20);
            a21 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x2 + i + 16), a21);
            a22 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x2 + i + 32), a22);
            a23 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x2 + i + 48), a23);
            a30 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x3 + i), a30);
            a31 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x3 + i + 16), a31);
            a32 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x3 + i + 32), a32);
            a33 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x3 + i + 48), a33);
        }

        for (; i + 16 <= n; i += 16)
        {
            var w = TRow.Load512(row, i);
            a00 = Vector512.FusedMultiplyAdd(w, Vector512.Load(x0 + i), a00);
            a10 = Vector512.FusedMultiplyAdd(w, Vector512.Load(x1 + i), a10);
            a20 = Vector512.FusedMultiplyAdd(w, Vector512.Load(x2 + i), a20);
            a30 = Vector512.FusedMultiplyAdd(w, Vector512.Load(x3 + i), a30);
        }

        float s0 = Vector512.Sum((a00 + a01) + (a02 + a03));
        float s1 = Vector512.Sum((a10 + a11) + (a12 + a13));
        float s2 = Vector512.Sum((a20 + a21) + (a22 + a23));
        float s3 = Vector512.Sum((a30 + a31) + (a32 + a33));
        for (; i < n; i++)
        {
            float wi = TRow.Load1(row, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        return Vector128.Create(s0, s1, s2, s3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4x512<TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n) where TRow : IRowLoader
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var wv = TRow.Load512(row, i);
            a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x0 + i), a0);
            a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x1 + i), a1);
            a2 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x2 + i), a2);
            a3 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x3 + i), a3);
        }

        float s0 = Vector512.Sum(a0), s1 = Vector512.Sum(a1), s2 = Vector512.Sum(a2), s3 = Vector512.Sum(a3);
        for (; i < n; i++)
        {
            float wi = TRow.Load1(row, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        return Vector128.Create(s0, s1, s2, s3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> A, Vector256<float> B) Dot2x8x512<TRow>(void* rowA, void* rowB, float** x, int n,
        byte* prefetch, long rowBytes) where TRow : IRowLoader
    {
        long prefetched = 0;
        float* x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5], x6 = x[6], x7 = x[7];
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            if (prefetch != null && prefetched < 2 * rowBytes)
            {
                Sse.Prefetch0(prefetch + prefetched);
                Sse.Prefetch0(prefetch + prefetched + 64);
                prefetched += 128;
            }

            var wa = TRow.Load512(rowA, i);
            var wb = TRow.Load512(rowB, i);
            var v = Vector512.Load(x0 + i);
            a0 = Vector512.FusedMultiplyAdd(wa, v, a0);
            b0 = Vector512.FusedMultiplyAdd(wb, v, b0);
            v = Vector512.Load(x1 + i);
            a1 = Vector512.FusedMultiplyAdd(wa, v, a1);
            b1 = Vector512.FusedMultiplyAdd(wb, v, b1);
            v = Vector512.Load(x2 + i);
            a2 = Vector512.FusedMultiplyAdd(wa, v, a2);
            b2 = Vector512.FusedMultiplyAdd(wb, v, b2);
            v = Vector512.Load(x3 + i);
            a3 = Vector512.FusedMultiplyAdd(wa, v, a3);
            b3 = Vector512.FusedMultiplyAdd(wb, v, b3);
            v = Vector512.Load(x4 + i);
            a4 = Vector512.FusedMultiplyAdd(wa, v, a4);
            b4 = Vector512.FusedMultiplyAdd(wb, v, b4);
            v = Vector512.Load(x5 + i);
            a5 = Vector512.FusedMultiplyAdd(wa, v, a5);
            b5 = Vector512.FusedMultiplyAdd(wb, v, b5);
            v = Vector512.Load(x6 + i);
            a6 = Vector512.FusedMultiplyAdd(wa, v, a6);
            b6 = Vector512.FusedMultiplyAdd(wb, v, b6);
            v = Vector512.Load(x7 + i);
            a7 = Vector512.FusedMultiplyAdd(wa, v, a7);
            b7 = Vector512.FusedMultiplyAdd(wb, v, b7);
        }

        var sa = Vector256.Create(Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3),
            Vector512.Sum(a4), Vector512.Sum(a5), Vector512.Sum(a6), Vector512.Sum(a7));
        var sb = Vector256.Create(Vector512.Sum(b0), Vector512.Sum(b1), Vector512.Sum(b2), Vector512.Sum(b3),
            Vector512.Sum(b4), Vector512.Sum(b5), Vector512.Sum(b6), Vector512.Sum(b7));
        for (; i < n; i++)
        {
            var wa = Vector256.Create(TRow.Load1(rowA, i));
            var wb = Vector256.Create(TRow.Load1(rowB, i));
            var xi = Vector256.Create(x0[i], x1[i], x2[i], x3[i], x4[i], x5[i], x6[i], x7[i]);
            sa += wa * xi;
            sb += wb * xi;
        }

        return (sa, sb);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4x256<TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n) where TRow : IRowLoader
    {
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var wv = TRow.Load256(row, i);
            a0 = Fma.MultiplyAdd(wv, Vector256.Load(x0 + i), a0);
            a1 = Fma.MultiplyAdd(wv, Vector256.Load(x1 + i), a1);
            a2 = Fma.MultiplyAdd(wv, Vector256.Load(x2 + i), a2);
            a3 = Fma.MultiplyAdd(wv, Vector256.Load(x3 + i), a3);
        }

        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < n; i++)
        {
            float wi = TRow.Load1(row, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        return Vector128.Create(s0, s1, s2, s3);
    }

    private static Vector128<float> Dot4Scalar<TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n) where TRow : IRowLoader =>
        Vector128.Create(DotScalar<TRow>(row, x0, n), DotScalar<TRow>(row, x1, n), DotScalar<TRow>(row, x2, n), DotScalar<TRow>(row, x3, n));

    // ---- Q8: int8 blocks of 32 with a float32 scale. Each block's int8 · x sum is formed in float, then scaled. ----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q8(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, int r0, int r1, KernelIsa isa,
        bool batchInvariant)
    {
        int cols = w.Cols, blocks = w.BlocksPerRow;
        for (int r = r0; r < r1; r++)
        {
            sbyte* q = w.Q8Data + (long)r * cols;
            float* scales = w.Q8Scales + (long)r * blocks;
            if (batchInvariant)
            {
                for (int b = 0; b < count; b++)
                {
                    float* xb = x + (long)b * xStride;
                    y[(long)b * yStride + r] = isa switch
                    {
                        KernelIsa.Avx512 => Q8Dot512(q, scales, xb, cols),
                        KernelIsa.Avx2 => Q8Dot256(q, scales, xb, cols),
                        _ => Q8DotScalar(q, scales, xb, 0, cols),
                    };
                }

                continue;
            }

            for (int b = 0; b < count; b += Tile)
            {
                int n = Math.Min(Tile, count - b);
                float* x0 = x + (long)b * xStride;
                float* x1 = n > 1 ? x0 + xStride : x0, x2 = n > 2 ? x0 + 2L * xStride : x0, x3 = n > 3 ? x0 + 3L * xStride : x0;
                Vector128<float> s;
                if (n == 1)
                {
                    float one = isa switch
                    {
                        KernelIsa.Avx512 => Q8Dot512(q, scales, x0, cols),
                        KernelIsa.Avx2 => Q8Dot256(q, scales, x0, cols),
                        _ => Q8DotScalar(q, scales, x0, 0, cols),
                    };
                    s = Vector128.Create(one, 0, 0, 0);
                }
                else
                {
                    s = isa switch
                    {
                        KernelIsa.Avx512 => Q8Dot4x512(q, scales, x0, x1, x2, x3, cols),
                        _ => Vector128.Create(Q8DotOne(q, scales, x0, cols, isa), Q8DotOne(q, scales, x1, cols, isa),
                            Q8DotOne(q, scales, x2, cols, isa), Q8DotOne(q, scales, x3, cols, isa)),
                    };
                }

                float* yb = y + (long)b * yStride + r;
                yb[0] = s.GetElement(0);
                if (n > 1) yb[yStride] = s.GetElement(1);
                if (n > 2) yb[2L * yStride] = s.GetElement(2);
                if (n > 3) yb[3L * yStride] = s.GetElement(3);
            }
        }
    }

    private static float Q8DotOne(sbyte* q, float* scales, float* x, int cols, KernelIsa isa) =>
        isa == KernelIsa.Avx2 ? Q8Dot256(q, scales, x, cols) : Q8DotScalar(q, scales, x, 0, cols);

    /// <summary>The partial last block (and the scalar path): <c>Σ_blocks d · Σ q·x</c> from column <paramref name="from"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8DotScalar(sbyte* q, float* scales, float* x, int from, int cols)
    {
        float total = 0;
        for (int start = from; start < cols; start += PackedMatrix.Q8BlockSize)
        {
            int end = Math.Min(cols, start + PackedMatrix.Q8BlockSize);
            float block = 0;
            for (int i = start; i < end; i++)
                block += q[i] * x[i];
            total += block * scales[start / PackedMatrix.Q8BlockSize];
        }

        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q8Load16(sbyte* q) =>
        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8Dot512(sbyte* q, float* scales, float* x, int cols)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int full = cols / PackedMatrix.Q8BlockSize, blk = 0;
        for (; blk + 2 <= full; blk += 2)
        {
            int i = blk * PackedMatrix.Q8BlockSize;
            var b0 = Vector512.FusedMultiplyAdd(Q8Load16(q + i + 16), Vector512.Load(x + i + 16), Q8Load16(q + i) * Vector512.Load(x + i));
            var b1 = Vector512.FusedMultiplyAdd(Q8Load16(q + i + 48), Vector512.Load(x + i + 48), Q8Load16(q + i + 32) * Vector512.Load(x + i + 32));
            acc0 = Vector512.FusedMultiplyAdd(b0, Vector512.Create(scales[blk]), acc0);
            acc1 = Vector512.FusedMultiplyAdd(b1, Vector512.Create(scales[blk + 1]), acc1);
        }

        for (; blk < full; blk++)
        {
            int i = blk * PackedMatrix.Q8BlockSize;
            var b0 = Vector512.FusedMultiplyAdd(Q8Load16(q + i + 16), Vector512.Load(x + i + 16), Q8Load16(q + i) * Vector512.Load(x + i));
            acc0 = Vector512.FusedMultiplyAdd(b0, Vector512.Create(scales[blk]), acc0);
        }

        return Vector512.Sum(acc0 + acc1) + Q8DotScalar(q, scales, x, full * PackedMatrix.Q8BlockSize, cols);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Q8Dot4x512(sbyte* q, float* scales, float* x0, float* x1, float* x2, float* x3, int cols)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        int full = cols / PackedMatrix.Q8BlockSize;
        for (int blk = 0; blk < full; blk++)
        {
            int i = blk * PackedMatrix.Q8BlockSize;
            var lo = Q8Load16(q + i);
            var hi = Q8Load16(q + i + 16);
            var d = Vector512.Create(scales[blk]);
            a0 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(hi, Vector512.Load(x0 + i + 16), lo * Vector512.Load(x0 + i)), d, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(hi, Vector512.Load(x1 + i + 16), lo * Vector512.Load(x1 + i)), d, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(hi, Vector512.Load(x2 + i + 16), lo * Vector512.Load(x2 + i)), d, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(hi, Vector512.Load(x3 + i + 16), lo * Vector512.Load(x3 + i)), d, a3);
        }

        int tail = full * PackedMatrix.Q8BlockSize;
        return Vector128.Create(
            Vector512.Sum(a0) + Q8DotScalar(q, scales, x0, tail, cols),
            Vector512.Sum(a1) + Q8DotScalar(q, scales, x1, tail, cols),
            Vector512.Sum(a2) + Q8DotScalar(q, scales, x2, tail, cols),
            Vector512.Sum(a3) + Q8DotScalar(q, scales, x3, tail, cols));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q8Load8(sbyte* q) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8Dot256(sbyte* q, float* scales, float* x, int cols)
    {
        var acc = Vector256<float>.Zero;
        int full = cols / PackedMatrix.Q8BlockSize;
        for (int blk = 0; blk < full; blk++)
        {
            int i = blk * PackedMatrix.Q8BlockSize;
            var b = Q8Load8(q + i) * Vector256.Load(x + i);
            b = Fma.MultiplyAdd(Q8Load8(q + i + 8), Vector256.Load(x + i + 8), b);
            b = Fma.MultiplyAdd(Q8Load8(q + i + 16), Vector256.Load(x + i + 16), b);
            b = Fma.MultiplyAdd(Q8Load8(q + i + 24), Vector256.Load(x + i + 24), b);
            acc = Fma.MultiplyAdd(b, Vector256.Create(scales[blk]), acc);
        }

        return Vector256.Sum(acc) + Q8DotScalar(q, scales, x, full * PackedMatrix.Q8BlockSize, cols);
    }
}
