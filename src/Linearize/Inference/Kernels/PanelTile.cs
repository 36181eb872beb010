// Repeats by design (what `duplicates` lists here): each tile spells out its 8 rows × N vectors as named
// accumulators, because the JIT keeps locals — not array elements — in registers, and it does not unroll.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Prefill's register tile in broadcast form (AVX-512): 8 weight rows × 48 tokens of a <see cref="TokenPanels"/>
/// panel, 24 accumulators. Per column, 3 activation loads and 8 broadcast weights feed 24 FMAs, and nothing is reduced
/// across lanes — each lane is one (row, token) sum — where the dot-product tile (<see cref="Tile2x8"/>) spends 10 loads
/// on 16 FMAs and ends in horizontal sums. Every sum runs column by column from 0 in one FMA chain,
/// <c>acc = fma(w[r, c], x[t, c], acc)</c>, so a token's result does not depend on its lane, its panel or how many
/// tokens were prefilled with it. Measured on Zen 5 (one core, 512 tokens; see docs/RESULTS.md): 186–202 against
/// 133–144 GFLOP/s for the dot tile, with a peak of 216–226.
/// </summary>
internal static unsafe class PanelTile
{
    /// <summary>Weight rows per tile.</summary>
    public const int Rows = 8;

    /// <summary>
    /// <c>o[i · 48 + j] = Σ_c w[i][c] · xt[c · 48 + j]</c> for rows <c>i &lt; 8</c> and lanes <c>j &lt; 48</c> over
    /// <paramref name="cols"/> columns (a full-width panel).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile48(float** w, float* xt, int cols, float* o)
    {
        float* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
        Vector512<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        Vector512<float> a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        for (int c = 0; c < cols; c++, xt += 48)
        {
            var x0 = Vector512.Load(xt);
            var x1 = Vector512.Load(xt + 16);
            var x2 = Vector512.Load(xt + 32);
            var b = Vector512.Create(w0[c]);
            a00 = Vector512.FusedMultiplyAdd(b, x0, a00);
            a01 = Vector512.FusedMultiplyAdd(b, x1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, x2, a02);
            b = Vector512.Create(w1[c]);
            a10 = Vector512.FusedMultiplyAdd(b, x0, a10);
            a11 = Vector512.FusedMultiplyAdd(b, x1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, x2, a12);
            b = Vector512.Create(w2[c]);
            a20 = Vector512.FusedMultiplyAdd(b, x0, a20);
            a21 = Vector512.FusedMultiplyAdd(b, x1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, x2, a22);
            b = Vector512.Create(w3[c]);
            a30 = Vector512.FusedMultiplyAdd(b, x0, a30);
            a31 = Vector512.FusedMultiplyAdd(b, x1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, x2, a32);
            b = Vector512.Create(w4[c]);
            a40 = Vector512.FusedMultiplyAdd(b, x0, a40);
            a41 = Vector512.FusedMultiplyAdd(b, x1, a41);
            a42 = Vector512.FusedMultiplyAdd(b, x2, a42);
            b = Vector512.Create(w5[c]);
            a50 = Vector512.FusedMultiplyAdd(b, x0, a50);
            a51 = Vector512.FusedMultiplyAdd(b, x1, a51);
            a52 = Vector512.FusedMultiplyAdd(b, x2, a52);
            b = Vector512.Create(w6[c]);
            a60 = Vector512.FusedMultiplyAdd(b, x0, a60);
            a61 = Vector512.FusedMultiplyAdd(b, x1, a61);
            a62 = Vector512.FusedMultiplyAdd(b, x2, a62);
            b = Vector512.Create(w7[c]);
            a70 = Vector512.FusedMultiplyAdd(b, x0, a70);
            a71 = Vector512.FusedMultiplyAdd(b, x1, a71);
            a72 = Vector512.FusedMultiplyAdd(b, x2, a72);
        }

        a00.Store(o);
        a01.Store(o + 16);
        a02.Store(o + 32);
        a10.Store(o + 48);
        a11.Store(o + 64);
        a12.Store(o + 80);
        a20.Store(o + 96);
        a21.Store(o + 112);
        a22.Store(o + 128);
        a30.Store(o + 144);
        a31.Store(o + 160);
        a32.Store(o + 176);
        a40.Store(o + 192);
        a41.Store(o + 208);
        a42.Store(o + 224);
        a50.Store(o + 240);
        a51.Store(o + 256);
        a52.Store(o + 272);
        a60.Store(o + 288);
        a61.Store(o + 304);
        a62.Store(o + 320);
        a70.Store(o + 336);
        a71.Store(o + 352);
        a72.Store(o + 368);
    }

    /// <summary>
    /// <c>o[i · 48 + j] = Σ_c w[i][c] · xt[c · 32 + j]</c> for rows <c>i &lt; 8</c> and lanes <c>j &lt; 32</c>: a last
    /// panel of 17 to 32 tokens (the same FMA chain per lane as <see cref="Tile48"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile32(float** w, float* xt, int cols, float* o)
    {
        float* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        Vector512<float> a40 = default, a41 = default, a50 = default, a51 = default, a60 = default, a61 = default, a70 = default, a71 = default;
        for (int c = 0; c < cols; c++, xt += 32)
        {
            var x0 = Vector512.Load(xt);
            var x1 = Vector512.Load(xt + 16);
            var b = Vector512.Create(w0[c]);
            a00 = Vector512.FusedMultiplyAdd(b, x0, a00);
            a01 = Vector512.FusedMultiplyAdd(b, x1, a01);
            b = Vector512.Create(w1[c]);
            a10 = Vector512.FusedMultiplyAdd(b, x0, a10);
            a11 = Vector512.FusedMultiplyAdd(b, x1, a11);
            b = Vector512.Create(w2[c]);
            a20 = Vector512.FusedMultiplyAdd(b, x0, a20);
            a21 = Vector512.FusedMultiplyAdd(b, x1, a21);
            b = Vector512.Create(w3[c]);
            a30 = Vector512.FusedMultiplyAdd(b, x0, a30);
            a31 = Vector512.FusedMultiplyAdd(b, x1, a31);
            b = Vector512.Create(w4[c]);
            a40 = Vector512.FusedMultiplyAdd(b, x0, a40);
            a41 = Vector512.FusedMultiplyAdd(b, x1, a41);
            b = Vector512.Create(w5[c]);
            a50 = Vector512.FusedMultiplyAdd(b, x0, a50);
            a51 = Vector512.FusedMultiplyAdd(b, x1, a51);
            b = Vector512.Create(w6[c]);
            a60 = Vector512.FusedMultiplyAdd(b, x0, a60);
            a61 = Vector512.FusedMultiplyAdd(b, x1, a61);
            b = Vector512.Create(w7[c]);
            a70 = Vector512.FusedMultiplyAdd(b, x0, a70);
            a71 = Vector512.FusedMultiplyAdd(b, x1, a71);
        }

        a00.Store(o);
        a01.Store(o + 16);
        a10.Store(o + 48);
        a11.Store(o + 64);
        a20.Store(o + 96);
        a21.Store(o + 112);
        a30.Store(o + 144);
        a31.Store(o + 160);
        a40.Store(o + 192);
        a41.Store(o + 208);
        a50.Store(o + 240);
        a51.Store(o + 256);
        a60.Store(o + 288);
        a61.Store(o + 304);
        a70.Store(o + 336);
        a71.Store(o + 352);
    }

    /// <summary>
    /// <c>o[i · 48 + j] = Σ_c w[i][c] · xt[c · 16 + j]</c> for rows <c>i &lt; 8</c> and lanes <c>j &lt; 16</c>: a last
    /// panel of at most 16 tokens (the same FMA chain per lane as <see cref="Tile48"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile16(float** w, float* xt, int cols, float* o)
    {
        float* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int c = 0; c < cols; c++, xt += 16)
        {
            var x = Vector512.Load(xt);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(w0[c]), x, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(w1[c]), x, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(w2[c]), x, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(w3[c]), x, a3);
            a4 = Vector512.FusedMultiplyAdd(Vector512.Create(w4[c]), x, a4);
            a5 = Vector512.FusedMultiplyAdd(Vector512.Create(w5[c]), x, a5);
            a6 = Vector512.FusedMultiplyAdd(Vector512.Create(w6[c]), x, a6);
            a7 = Vector512.FusedMultiplyAdd(Vector512.Create(w7[c]), x, a7);
        }

        a0.Store(o);
        a1.Store(o + 48);
        a2.Store(o + 96);
        a3.Store(o + 144);
        a4.Store(o + 192);
        a5.Store(o + 240);
        a6.Store(o + 288);
        a7.Store(o + 336);
    }
}
