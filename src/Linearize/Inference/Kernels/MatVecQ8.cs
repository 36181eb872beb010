// Repeats by design (what `duplicates` lists here): Dot4 spells out its 4 vectors × 2 accumulators, because the JIT
// keeps locals — not array elements — in registers; each line is one vector's step of Dot's loop.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Linearize.Inference.Kernels.Native;

namespace Linearize.Inference.Kernels;

/// <summary>
/// A <see cref="WeightFormat.Q8"/> matrix times activations quantized to Q8 blocks (<see cref="Q8Activations"/>):
/// <c>y[b, r] = Σ_blocks d_w · d_x · Σ_{i in block} q_w[i] · q_x[i]</c>, llama.cpp's <c>ggml_vec_dot_q8_0_q8_0</c>.
/// Each block's 32 products are summed exactly in int32 (<see cref="IInt8Products"/>), converted to float32, scaled
/// by the activations' block scale and added to a float32 accumulator with one fused multiply-add by the weights'
/// (two broadcasts from memory rather than a scalar product broadcast per block: fewer instructions, and the int
/// sums are exact either way). The naive twin is <see cref="NaiveMatVec"/>.
/// </summary>
/// <remarks>
/// Every vector's dot product is computed the same way whatever the batch (two accumulators taking alternate blocks,
/// the same reduction, the partial last block added last), so the kernels are batch-invariant by construction and
/// one path serves <see cref="EngineOptions.BatchInvariant"/> and the tiled batch alike: a batch only shares each
/// loaded weight block among four vectors. The managed vector levels run on 256-bit registers — one block is one
/// register, and .NET has no 512-bit VNNI — with <c>vpdpbusd</c> where AVX-VNNI exists (Zen 4, Alder Lake and later)
/// and <c>vpmaddubsw</c> + <c>vpmaddwd</c> elsewhere; with AVX512_VNNI, four vectors or more (prefill, batches) go
/// through the native 4 × 4 tile and one vector (decoding) through the 4 × 1 tile (<see cref="NativeQ8Tiles"/>), which
/// sum two blocks per instruction in the same lanes and order. The scalar level is the plain sequential sum over blocks.
/// </remarks>
public static unsafe class MatVecQ8
{
    private const int Block = PackedMatrix.Q8BlockSize;
    private const int Tile = 4;

    /// <summary>
    /// How far ahead of the block being read the kernels ask for weights (<c>prefetcht0</c>, one cache line per two
    /// blocks). A Q8 block costs several instructions per 32 bytes, so far fewer bytes are in flight than while
    /// streaming float32 rows, and the hardware prefetcher alone leaves the loads waiting on memory: on one AVX2 core
    /// over a model's matrices the prefetch took the product from about 14 to 18 GB/s, against 20 GB/s for merely
    /// reading the bytes; anywhere from 2 to 8 KiB ahead measured alike. Prefetching past a matrix's end is harmless
    /// (it never faults).
    /// </summary>
    internal const int PrefetchBytes = 4096;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times the first <paramref name="count"/> rows of
    /// <paramref name="x"/>, written to <paramref name="y"/> at <c>b · yStride + r</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1, KernelIsa isa)
    {
        if (isa == KernelIsa.Scalar)
            RowsScalar(w, x, count, y, yStride, r0, r1);
        else if (isa == KernelIsa.Avx512 && count == 1 && NativeQ8Tiles.IsSupported)
        {
            if (AvxVnni.IsSupported)
                OneVectorNative<VnniProducts>(w, x, y, r0, r1);
            else
                OneVectorNative<MaddProducts>(w, x, y, r0, r1);
        }
        else if (isa == KernelIsa.Avx512 && count >= NativeQ8Tiles.Tokens && NativeQ8Tiles.IsSupported)
        {
            if (AvxVnni.IsSupported)
                RowsNative<VnniProducts>(w, x, count, y, yStride, r0, r1);
            else
                RowsNative<MaddProducts>(w, x, count, y, yStride, r0, r1);
        }
        else if (AvxVnni.IsSupported)
            Rows<VnniProducts>(w, x, count, y, yStride, r0, r1);
        else
            Rows<MaddProducts>(w, x, count, y, yStride, r0, r1);
    }

    /// <summary>
    /// The same products with <see cref="NativeQ8Tiles"/> (512-bit <c>vpdpbusd</c>) for each 4 rows × 4 vectors, bit for
    /// bit what <see cref="Rows{TDot}"/> gives: the tile sums the whole blocks in the managed kernel's lanes and order,
    /// and the partial last block is added here as <see cref="Dot{TDot}"/> adds it. Rows and vectors past the last whole
    /// tile take the managed kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RowsNative<TDot>(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1)
        where TDot : struct, IInt8Products
    {
        Check(w, x, count);
        int cols = w.Cols, full = cols / Block, rest = cols - full * Block;
        var layout = w.Q8Layout;
        long rowBytes = layout.RowBytes;
        var tile = stackalloc float[NativeQ8Tiles.Rows * NativeQ8Tiles.Tokens];
        int r = r0;
        for (; r + NativeQ8Tiles.Rows <= r1; r += NativeQ8Tiles.Rows)
        {
            byte* row = w.Q8Row(r);
            int b = 0;
            for (; b + NativeQ8Tiles.Tokens <= count; b += NativeQ8Tiles.Tokens)
            {
                NativeQ8Tiles.Tile(row, rowBytes, layout, x.Quants(b), x.RowBytes, x.Scales(b), x.BlocksPerRow, full, tile);
                for (int t = 0; t < NativeQ8Tiles.Tokens; t++)
                    for (int i = 0; i < NativeQ8Tiles.Rows; i++)
                        y[(long)(b + t) * yStride + r + i] = rest == 0
                            ? tile[t * NativeQ8Tiles.Rows + i]
                            : tile[t * NativeQ8Tiles.Rows + i] + Tail(row + i * rowBytes, layout, x.Quants(b + t), x.Scales(b + t), full, rest);
            }

            for (; b < count; b++)
                for (int i = 0; i < NativeQ8Tiles.Rows; i++)
                    y[(long)b * yStride + r + i] = Dot<TDot>(row + i * rowBytes, layout, x.Quants(b), x.Scales(b));
        }

        if (r < r1)
            Rows<TDot>(w, x, count, y, yStride, r, r1);
    }

    /// <summary>
    /// One vector (decoding) with <see cref="NativeQ8Tiles.TileOneToken"/>, bit for bit what <see cref="Rows{TDot}"/>
    /// gives. The tile reads four rows at once, and they are taken a quarter of the range apart (rows
    /// <c>r, r + n/4, r + n/2, r + 3n/4</c>) rather than adjacent: four sequential streams far apart keep more cache
    /// misses in flight than one stream four rows wide, which is what a matrix × vector over a large model is short
    /// of (docs/ARCHITECTURE.md, "Q8 numerics"). The rows past the last whole quarter take the managed kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void OneVectorNative<TDot>(PackedMatrix w, Q8Activations x, float* y, int r0, int r1)
        where TDot : struct, IInt8Products
    {
        Check(w, x, 1);
        int cols = w.Cols, full = cols / Block, rest = cols - full * Block;
        var tile = stackalloc float[NativeQ8Tiles.Rows];
        int quarter = (r1 - r0) / NativeQ8Tiles.Rows;
        var layout = w.Q8Layout;
        long stride = quarter * layout.RowBytes;
        sbyte* qx = x.Quants(0);
        float* dx = x.Scales(0);
        for (int r = r0; r < r0 + quarter; r++)
        {
            byte* row = w.Q8Row(r);
            NativeQ8Tiles.TileOneToken(row, stride, layout, qx, dx, full, tile);
            for (int i = 0; i < NativeQ8Tiles.Rows; i++)
                y[r + i * quarter] = rest == 0 ? tile[i] : tile[i] + Tail(row + i * stride, layout, qx, dx, full, rest);
        }

        if (r0 + NativeQ8Tiles.Rows * quarter < r1)
            Rows<TDot>(w, x, 1, y, 0, r0 + NativeQ8Tiles.Rows * quarter, r1);
    }

    /// <summary>The vector kernel with a chosen product instruction (tests force each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TDot>(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1)
        where TDot : struct, IInt8Products
    {
        Check(w, x, count);
        var layout = w.Q8Layout;
        for (int r = r0; r < r1; r++)
        {
            byte* row = w.Q8Row(r);
            int b = 0;
            for (; b + Tile <= count; b += Tile)
                Dot4<TDot>(row, layout, x, b, y + (long)b * yStride + r, yStride);
            for (; b < count; b++)
                y[(long)b * yStride + r] = Dot<TDot>(row, layout, x.Quants(b), x.Scales(b));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsScalar(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1)
    {
        Check(w, x, count);
        var layout = w.Q8Layout;
        int cols = w.Cols, blocks = w.BlocksPerRow;
        for (int r = r0; r < r1; r++)
            for (int b = 0; b < count; b++)
            {
                byte* row = w.Q8Row(r);
                sbyte* qx = x.Quants(b);
                float* dx = x.Scales(b);
                float total = 0;
                for (int k = 0; k < blocks; k++)
                    total += Term(BlockSum((sbyte*)(row + layout.QuantOffset(k)), qx + k * Block, Math.Min(Block, cols - k * Block)), dx[k],
                        *(float*)(row + layout.ScaleOffset(k)));
                y[(long)b * yStride + r] = total;
            }
    }

    private static void Check(PackedMatrix w, Q8Activations x, int count)
    {
        if (w.Format != WeightFormat.Q8 || x.Cols != w.Cols || count > x.Count)
            throw new ArgumentException($"a {w.Format} [{w.Rows}, {w.Cols}] matrix cannot take {count} of {x.Count} Q8 rows of {x.Cols}");
    }

    /// <summary><c>Σ q_w · q_x</c> over the first <paramref name="n"/> columns, exactly (the partial last block and the scalar level).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockSum(sbyte* q, sbyte* qx, int n)
    {
        int s = 0;
        for (int i = 0; i < n; i++)
            s += q[i] * qx[i];
        return s;
    }

    /// <summary>One block's term in every path's order: the exact int sum, times the activations' scale, times the weights'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Term(int sum, float dx, float dw) => sum * dx * dw;

    /// <summary>The last block when the row ends inside it (block index <paramref name="k"/>), as the final term of every vector's sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(byte* row, in Q8RowLayout layout, sbyte* qx, float* dx, int k, int rest) =>
        rest == 0 ? 0f : Term(BlockSum((sbyte*)(row + layout.QuantOffset(k)), qx + (nint)k * Block, rest), dx[k], *(float*)(row + layout.ScaleOffset(k)));

    /// <summary>The group of whole blocks starting at block <paramref name="g0"/> (a multiple of the group size): pointers
    /// offset so that <c>q + k · 32</c> and <c>d + k</c> address block <c>k</c>'s quants and scale for every <c>k</c> in
    /// <c>[g0, end)</c>, as if the row were one array of quants and one of scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group(byte* row, in Q8RowLayout layout, int g0, int full, out sbyte* q, out float* d, out int end)
    {
        q = (sbyte*)(row + layout.QuantOffset(g0)) - (nint)g0 * Block;
        d = (float*)(row + layout.ScaleOffset(g0)) - g0;
        end = Math.Min(g0 + Q8RowLayout.GroupBlocks, full);
    }

    /// <summary><c>acc + ((float)Σ q_w·q_x · d_x) · d_w</c> lane-wise for one block whose weights (and their magnitudes)
    /// are loaded; the scales are broadcast from memory (one embedded-broadcast operand each with AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step<TDot>(Vector256<byte> absW, Vector256<sbyte> w, sbyte* qx, float* dx, float* dw, Vector256<float> acc)
        where TDot : struct, IInt8Products =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Sum4(absW, w, Vector256.Load(qx))) * Vector256.Create(*dx), Vector256.Create(*dw), acc);

    /// <summary>One vector: blocks alternate between two accumulators (independent FMA chains), then one reduction and the partial block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TDot>(byte* row, in Q8RowLayout layout, sbyte* qx, float* dx) where TDot : struct, IInt8Products
    {
        int full = layout.Cols / Block;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
        // Groups hold an even number of blocks, so the pairs (and the odd last block, to a0) are those of one long row.
        for (int g0 = 0; g0 < full; g0 += Q8RowLayout.GroupBlocks)
        {
            Group(row, layout, g0, full, out var q, out var d, out int end);
            nint k = g0;
            for (; k + 1 < end; k += 2)
            {
                nint o = k * Block;
                Sse.Prefetch0(q + o + PrefetchBytes);
                var w0 = Vector256.Load(q + o);
                var w1 = Vector256.Load(q + o + Block);
                a0 = Step<TDot>(Avx2.Abs(w0), w0, qx + o, dx + k, d + k, a0);
                a1 = Step<TDot>(Avx2.Abs(w1), w1, qx + o + Block, dx + k + 1, d + k + 1, a1);
            }

            if (k < end)
            {
                var w0 = Vector256.Load(q + k * Block);
                a0 = Step<TDot>(Avx2.Abs(w0), w0, qx + k * Block, dx + k, d + k, a0);
            }
        }

        return Vector256.Sum(a0 + a1) + Tail(row, layout, qx, dx, full, layout.Cols - full * Block);
    }

    /// <summary>
    /// Vectors <c>b .. b+3</c> of <paramref name="x"/> sharing each loaded weight block (and its magnitudes), each summed
    /// exactly as <see cref="Dot{TDot}"/> sums one: bit-identical results, a quarter of the weight loads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TDot>(byte* row, in Q8RowLayout layout, Q8Activations x, int b, float* y, int yStride) where TDot : struct, IInt8Products
    {
        sbyte* x0 = x.Quants(b), x1 = x.Quants(b + 1), x2 = x.Quants(b + 2), x3 = x.Quants(b + 3);
        float* s0 = x.Scales(b), s1 = x.Scales(b + 1), s2 = x.Scales(b + 2), s3 = x.Scales(b + 3);
        int full = layout.Cols / Block;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (int g0 = 0; g0 < full; g0 += Q8RowLayout.GroupBlocks)
        {
            Group(row, layout, g0, full, out var q, out var d, out int end);
            nint k = g0;
            for (; k + 1 < end; k += 2)
            {
                nint i = k * Block, j = i + Block;
                Sse.Prefetch0(q + i + PrefetchBytes);
                var w0 = Vector256.Load(q + i);
                var w1 = Vector256.Load(q + j);
                var m0 = Avx2.Abs(w0);
                var m1 = Avx2.Abs(w1);
                a00 = Step<TDot>(m0, w0, x0 + i, s0 + k, d + k, a00);
                a01 = Step<TDot>(m1, w1, x0 + j, s0 + k + 1, d + k + 1, a01);
                a10 = Step<TDot>(m0, w0, x1 + i, s1 + k, d + k, a10);
                a11 = Step<TDot>(m1, w1, x1 + j, s1 + k + 1, d + k + 1, a11);
                a20 = Step<TDot>(m0, w0, x2 + i, s2 + k, d + k, a20);
                a21 = Step<TDot>(m1, w1, x2 + j, s2 + k + 1, d + k + 1, a21);
                a30 = Step<TDot>(m0, w0, x3 + i, s3 + k, d + k, a30);
                a31 = Step<TDot>(m1, w1, x3 + j, s3 + k + 1, d + k + 1, a31);
            }

            if (k < end)
            {
                nint i = k * Block;
                var w0 = Vector256.Load(q + i);
                var m0 = Avx2.Abs(w0);
                a00 = Step<TDot>(m0, w0, x0 + i, s0 + k, d + k, a00);
                a10 = Step<TDot>(m0, w0, x1 + i, s1 + k, d + k, a10);
                a20 = Step<TDot>(m0, w0, x2 + i, s2 + k, d + k, a20);
                a30 = Step<TDot>(m0, w0, x3 + i, s3 + k, d + k, a30);
            }
        }

        int rest = layout.Cols - full * Block;
        y[0] = Vector256.Sum(a00 + a01) + Tail(row, layout, x0, s0, full, rest);
        y[yStride] = Vector256.Sum(a10 + a11) + Tail(row, layout, x1, s1, full, rest);
        y[2L * yStride] = Vector256.Sum(a20 + a21) + Tail(row, layout, x2, s2, full, rest);
        y[3L * yStride] = Vector256.Sum(a30 + a31) + Tail(row, layout, x3, s3, full, rest);
    }
}
