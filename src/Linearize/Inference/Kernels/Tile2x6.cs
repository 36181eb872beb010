// Repeats by design (what `duplicates` lists here): the tile's 6 activation vectors × 2 rows are spelled out as
// 12 named accumulators, because the JIT keeps locals — not array elements — in registers, and it does not unroll.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// <see cref="Tile2x8"/>'s register tile for AVX2's 16 registers: two float32 weight rows × six activation vectors on
/// 256-bit vectors — 12 accumulators, 2 weight vectors and an activation vector, 15 live registers. Per 8 columns,
/// 2 weight loads and 6 activation loads feed 12 FMAs, where a dot product at a time needs a weight load per FMA.
/// Prefill (<see cref="MatMat"/>) uses it on CPUs without AVX-512.
/// </summary>
internal static unsafe class Tile2x6
{
    public const int Tokens = 6;

    /// <summary>
    /// <c>A[j] = Σ_c rowA[c] · x[j][c]</c> and likewise <c>B[j]</c> for the six vectors <c>x[0..6)</c> over
    /// <paramref name="n"/> columns, in lanes 0–5 of each result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<float> A, Vector256<float> B) Dot(float* rowA, float* rowB, float** x, int n)
    {
        float* x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], x4 = x[4], x5 = x[5];
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var wa = Vector256.Load(rowA + i);
            var wb = Vector256.Load(rowB + i);
            var v = Vector256.Load(x0 + i);
            a0 = Vector256.FusedMultiplyAdd(wa, v, a0);
            b0 = Vector256.FusedMultiplyAdd(wb, v, b0);
            v = Vector256.Load(x1 + i);
            a1 = Vector256.FusedMultiplyAdd(wa, v, a1);
            b1 = Vector256.FusedMultiplyAdd(wb, v, b1);
            v = Vector256.Load(x2 + i);
            a2 = Vector256.FusedMultiplyAdd(wa, v, a2);
            b2 = Vector256.FusedMultiplyAdd(wb, v, b2);
            v = Vector256.Load(x3 + i);
            a3 = Vector256.FusedMultiplyAdd(wa, v, a3);
            b3 = Vector256.FusedMultiplyAdd(wb, v, b3);
            v = Vector256.Load(x4 + i);
            a4 = Vector256.FusedMultiplyAdd(wa, v, a4);
            b4 = Vector256.FusedMultiplyAdd(wb, v, b4);
            v = Vector256.Load(x5 + i);
            a5 = Vector256.FusedMultiplyAdd(wa, v, a5);
            b5 = Vector256.FusedMultiplyAdd(wb, v, b5);
        }

        var sa = Reduce6(a0, a1, a2, a3, a4, a5);
        var sb = Reduce6(b0, b1, b2, b3, b4, b5);
        if (i < n)
        {
            // The columns past the last full vector (only where a slice's length is not a multiple of 8).
            for (int j = 0; j < Tokens; j++)
            {
                float ta = 0, tb = 0;
                for (int c = i; c < n; c++)
                {
                    ta += rowA[c] * x[j][c];
                    tb += rowB[c] * x[j][c];
                }

                sa = sa.WithElement(j, sa.GetElement(j) + ta);
                sb = sb.WithElement(j, sb.GetElement(j) + tb);
            }
        }

        return (sa, sb);
    }

    /// <summary>The horizontal sums of six vectors in lanes 0–5: pairwise adds within 128-bit lanes, then the two
    /// halves added (lanes 6–7 hold copies of 4–5).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Reduce6(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3,
        Vector256<float> v4, Vector256<float> v5)
    {
        // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7].
        var p01 = Avx.HorizontalAdd(v0, v1);
        var p23 = Avx.HorizontalAdd(v2, v3);
        var p45 = Avx.HorizontalAdd(v4, v5);
        var q0123 = Avx.HorizontalAdd(p01, p23); // [s0, s1, s2, s3 | s0', s1', s2', s3']
        var q45 = Avx.HorizontalAdd(p45, p45);   // [s4, s5, s4, s5 | s4', s5', s4', s5']
        return Vector256.Create(q0123.GetLower() + q0123.GetUpper(), q45.GetLower() + q45.GetUpper());
    }
}
