// Repeats by design (what `duplicates` lists here): Dot4 spells out its 4 vectors × 2 accumulators, because the JIT
// keeps locals — not array elements — in registers; each line is one vector's step of Dot's loop.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// A <see cref="WeightFormat.Q8"/> matrix times activations quantized to Q8 blocks (<see cref="Q8Activations"/>):
/// <c>y[b, r] = Σ_blocks (d_w · d_x) · Σ_{i in block} q_w[i] · q_x[i]</c>, llama.cpp's <c>ggml_vec_dot_q8_0_q8_0</c>.
/// Each block's 32 products are summed exactly in int32 (<see cref="IInt8Products"/>), converted to float32 and
/// added to a float32 accumulator with one fused multiply-add by the block's combined scale. The naive twin is
/// <see cref="NaiveMatVec"/>.
/// </summary>
/// <remarks>
/// Every vector's dot product is computed the same way whatever the batch (two accumulators taking alternate blocks,
/// the same reduction, the partial last block added last), so the kernels are batch-invariant by construction and
/// one path serves <see cref="EngineOptions.BatchInvariant"/> and the tiled batch alike: a batch only shares each
/// loaded weight block among four vectors. All vector levels run on 256-bit registers — one block is one register,
/// and .NET has no 512-bit VNNI — with <c>vpdpbusd</c> where AVX-VNNI exists (Zen 4, Alder Lake and later) and
/// <c>vpmaddubsw</c> + <c>vpmaddwd</c> elsewhere. The scalar level is the plain sequential sum over blocks.
/// </remarks>
public static unsafe class MatVecQ8
{
    private const int Block = PackedMatrix.Q8BlockSize;
    private const int Tile = 4;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times the first <paramref name="count"/> rows of
    /// <paramref name="x"/>, written to <paramref name="y"/> at <c>b · yStride + r</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1, KernelIsa isa)
    {
        if (isa == KernelIsa.Scalar)
            RowsScalar(w, x, count, y, yStride, r0, r1);
        else if (AvxVnni.IsSupported)
            Rows<VnniProducts>(w, x, count, y, yStride, r0, r1);
        else
            Rows<MaddProducts>(w, x, count, y, yStride, r0, r1);
    }

    /// <summary>The vector kernel with a chosen product instruction (tests force each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TDot>(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1)
        where TDot : struct, IInt8Products
    {
        Check(w, x, count);
        int cols = w.Cols, blocks = w.BlocksPerRow;
        for (int r = r0; r < r1; r++)
        {
            sbyte* q = w.Q8Data + (long)r * cols;
            float* d = w.Q8Scales + (long)r * blocks;
            int b = 0;
            for (; b + Tile <= count; b += Tile)
                Dot4<TDot>(q, d, x, b, cols, y + (long)b * yStride + r, yStride);
            for (; b < count; b++)
                y[(long)b * yStride + r] = Dot<TDot>(q, d, x.Quants(b), x.Scales(b), cols);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsScalar(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1)
    {
        Check(w, x, count);
        int cols = w.Cols, blocks = w.BlocksPerRow;
        for (int r = r0; r < r1; r++)
            for (int b = 0; b < count; b++)
            {
                sbyte* q = w.Q8Data + (long)r * cols, qx = x.Quants(b);
                float* d = w.Q8Scales + (long)r * blocks, dx = x.Scales(b);
                float total = 0;
                for (int k = 0; k < blocks; k++)
                    total += BlockSum(q, qx, k * Block, Math.Min(cols, (k + 1) * Block)) * (d[k] * dx[k]);
                y[(long)b * yStride + r] = total;
            }
    }

    private static void Check(PackedMatrix w, Q8Activations x, int count)
    {
        if (w.Format != WeightFormat.Q8 || x.Cols != w.Cols || count > x.Count)
            throw new ArgumentException($"a {w.Format} [{w.Rows}, {w.Cols}] matrix cannot take {count} of {x.Count} Q8 rows of {x.Cols}");
    }

    /// <summary><c>Σ q_w · q_x</c> over columns <c>[from, to)</c>, exactly (the partial last block and the scalar level).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockSum(sbyte* q, sbyte* qx, int from, int to)
    {
        int s = 0;
        for (int i = from; i < to; i++)
            s += q[i] * qx[i];
        return s;
    }

    /// <summary>The last block when the row ends inside it, as the final term of every vector's sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(sbyte* q, float* d, sbyte* qx, float* dx, int cols)
    {
        int full = cols / Block;
        return full * Block == cols ? 0f : BlockSum(q, qx, full * Block, cols) * (d[full] * dx[full]);
    }

    /// <summary><c>acc + (float)Σ q_w·q_x · scale</c> lane-wise for one block whose weights (and their magnitudes) are loaded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step<TDot>(Vector256<byte> absW, Vector256<sbyte> w, sbyte* qx, float scale, Vector256<float> acc)
        where TDot : struct, IInt8Products =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Sum4(absW, w, Vector256.Load(qx))), Vector256.Create(scale), acc);

    /// <summary>One vector: blocks alternate between two accumulators (independent FMA chains), then one reduction and the partial block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TDot>(sbyte* q, float* d, sbyte* qx, float* dx, int cols) where TDot : struct, IInt8Products
    {
        int full = cols / Block, k = 0;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
        for (; k + 2 <= full; k += 2)
        {
            var w0 = Vector256.Load(q + k * Block);
            var w1 = Vector256.Load(q + (k + 1) * Block);
            a0 = Step<TDot>(Avx2.Abs(w0), w0, qx + k * Block, d[k] * dx[k], a0);
            a1 = Step<TDot>(Avx2.Abs(w1), w1, qx + (k + 1) * Block, d[k + 1] * dx[k + 1], a1);
        }

        if (k < full)
        {
            var w0 = Vector256.Load(q + k * Block);
            a0 = Step<TDot>(Avx2.Abs(w0), w0, qx + k * Block, d[k] * dx[k], a0);
        }

        return Vector256.Sum(a0 + a1) + Tail(q, d, qx, dx, cols);
    }

    /// <summary>
    /// Vectors <c>b .. b+3</c> of <paramref name="x"/> sharing each loaded weight block (and its magnitudes), each summed
    /// exactly as <see cref="Dot{TDot}"/> sums one: bit-identical results, a quarter of the weight loads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TDot>(sbyte* q, float* d, Q8Activations x, int b, int cols, float* y, int yStride) where TDot : struct, IInt8Products
    {
        sbyte* x0 = x.Quants(b), x1 = x.Quants(b + 1), x2 = x.Quants(b + 2), x3 = x.Quants(b + 3);
        float* s0 = x.Scales(b), s1 = x.Scales(b + 1), s2 = x.Scales(b + 2), s3 = x.Scales(b + 3);
        int full = cols / Block, k = 0;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (; k + 2 <= full; k += 2)
        {
            int i = k * Block, j = i + Block;
            var w0 = Vector256.Load(q + i);
            var w1 = Vector256.Load(q + j);
            var m0 = Avx2.Abs(w0);
            var m1 = Avx2.Abs(w1);
            float d0 = d[k], d1 = d[k + 1];
            a00 = Step<TDot>(m0, w0, x0 + i, d0 * s0[k], a00);
            a01 = Step<TDot>(m1, w1, x0 + j, d1 * s0[k + 1], a01);
            a10 = Step<TDot>(m0, w0, x1 + i, d0 * s1[k], a10);
            a11 = Step<TDot>(m1, w1, x1 + j, d1 * s1[k + 1], a11);
            a20 = Step<TDot>(m0, w0, x2 + i, d0 * s2[k], a20);
            a21 = Step<TDot>(m1, w1, x2 + j, d1 * s2[k + 1], a21);
            a30 = Step<TDot>(m0, w0, x3 + i, d0 * s3[k], a30);
            a31 = Step<TDot>(m1, w1, x3 + j, d1 * s3[k + 1], a31);
        }

        if (k < full)
        {
            int i = k * Block;
            var w0 = Vector256.Load(q + i);
            var m0 = Avx2.Abs(w0);
            a00 = Step<TDot>(m0, w0, x0 + i, d[k] * s0[k], a00);
            a10 = Step<TDot>(m0, w0, x1 + i, d[k] * s1[k], a10);
            a20 = Step<TDot>(m0, w0, x2 + i, d[k] * s2[k], a20);
            a30 = Step<TDot>(m0, w0, x3 + i, d[k] * s3[k], a30);
        }

        y[0] = Vector256.Sum(a00 + a01) + Tail(q, d, x0, s0, cols);
        y[yStride] = Vector256.Sum(a10 + a11) + Tail(q, d, x1, s1, cols);
        y[2L * yStride] = Vector256.Sum(a20 + a21) + Tail(q, d, x2, s2, cols);
        y[3L * yStride] = Vector256.Sum(a30 + a31) + Tail(q, d, x3, s3, cols);
    }
}
