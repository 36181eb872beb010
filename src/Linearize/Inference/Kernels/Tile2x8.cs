// Repeats by design (what `duplicates` lists here): the tile's 8 activation vectors × 2 rows are spelled out as
// 16 named accumulators, because the JIT keeps locals — not array elements — in registers, and it does not unroll.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// The register tile of two weight rows × eight activation vectors, shared by batched decoding (<see cref="MatVec"/>,
/// rows of any <see cref="IRowLoader"/> format) and prefill (<see cref="MatMat"/>, rows widened to float32): per 16
/// columns, 2 weight loads and 8 activation loads feed 16 FMAs. AVX-512 only — 16 accumulators, 2 weight vectors and
/// an activation vector are 19 live registers, which fit AVX-512's 32 but would spill on AVX2's 16 — so it is written
/// on <see cref="Vec512"/> rather than over every <see cref="IFloatVector{TSelf, TV}"/>.
/// </summary>
internal static unsafe class Tile2x8
{
    /// <summary>
    /// <c>A[j] = Σ_c rowA[c] · x[j][c]</c> and likewise <c>B[j]</c> for the eight vectors <c>x[0..8)</c> over
    /// <paramref name="n"/> columns. While the tile runs, <paramref name="prefetchBytes"/> bytes from
    /// <paramref name="prefetch"/> (when not null) are prefetched: decoding uses it for the next row pair, because with
    /// 16 FMAs per 64 bytes the loop is slower than the hardware prefetcher's stride detection expects.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<float> A, Vector256<float> B) Dot<TRow>(void* rowA, void* rowB, float** x, int n,
        byte* prefetch, long prefetchBytes) where TRow : IRowLoader
    {
        long prefetched = 0;
        float* x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5], x6 = x[6], x7 = x[7];
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            if (prefetch != null && prefetched < prefetchBytes)
            {
                Sse.Prefetch0(prefetch + prefetched);
                Sse.Prefetch0(prefetch + prefetched + 64);
                prefetched += 128;
            }

            var wa = TRow.Load<Vec512, Vector512<float>>(rowA, i);
            var wb = TRow.Load<Vec512, Vector512<float>>(rowB, i);
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

        var sa = Reduce8(a0, a1, a2, a3, a4, a5, a6, a7);
        var sb = Reduce8(b0, b1, b2, b3, b4, b5, b6, b7);
        if (i < n)
        {
            // The columns past the last full vector (only where a row's length is not a multiple of 16).
            for (int j = 0; j < 8; j++)
            {
                float ta = 0, tb = 0;
                for (int c = i; c < n; c++)
                {
                    ta += TRow.Load1(rowA, c) * x[j][c];
                    tb += TRow.Load1(rowB, c) * x[j][c];
                }

                sa = sa.WithElement(j, sa.GetElement(j) + ta);
                sb = sb.WithElement(j, sb.GetElement(j) + tb);
            }
        }

        return (sa, sb);
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
        var p01 = Avx.HorizontalAdd(h0, h1);
        var p23 = Avx.HorizontalAdd(h2, h3);
        var p45 = Avx.HorizontalAdd(h4, h5);
        var p67 = Avx.HorizontalAdd(h6, h7);
        // [s0, s1, s2, s3 | s0', s1', s2', s3'] for vectors 0–3, and likewise 4–7 (two half-sums per lane).
        var q0123 = Avx.HorizontalAdd(p01, p23);
        var q4567 = Avx.HorizontalAdd(p45, p67);
        // Add the two 128-bit halves: lower = vectors 0–3, upper = vectors 4–7.
        var lo = Avx.Permute2x128(q0123, q4567, 0x20);
        var hi = Avx.Permute2x128(q0123, q4567, 0x31);
        return lo + hi;
    }
}
