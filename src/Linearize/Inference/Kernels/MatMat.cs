// Repeats by design (what `duplicates` lists here): the file header has the same shape as MatVec.cs's (usings, a
// static class of kernel constants); the tile itself is Tile2x8, shared with decoding.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Matrix × matrix for prefill: <c>y[t, r] = Σ_c W[r, c] · x[t, c]</c> over a block of rows and many tokens. Unlike
/// decoding, this is compute-bound, so the work is arranged for the FMA units rather than for one pass over memory:
/// a block of <see cref="BlockRows"/> rows is first widened to float32 in a per-thread buffer (bfloat16 is
/// expanded once per block and reused for every token — the arithmetic stays float32, as in decoding), then tiles of
/// 2 rows × <see cref="TokenTile"/> tokens (<see cref="Tile2x8"/>) keep 16 accumulators in registers: per 16 columns, 2 weight loads and 8
/// activation loads feed 16 FMAs; with AVX2's 16 registers the tile is 2 rows × <see cref="TokenTileAvx2"/> tokens on
/// 256-bit vectors (<see cref="Tile2x6"/>). The depth is cut into slices of at most <see cref="MaxDepth"/> columns so a tile's
/// activations (8 × 2 KiB) stay in a 32 KiB L1 beside the two rows streaming through it. The scalar level falls back to
/// <see cref="MatVec"/>. Q8 weights multiply quantized activations (<see cref="RowsQ8"/>). The naive twin is <see cref="NaiveMatVec"/>.
/// </summary>
public static unsafe class MatMat
{
    /// <summary>Rows per work unit: the unit a thread claims, and the rows widened to float32 at once.</summary>
    public const int BlockRows = 16;

    /// <summary>Tokens per register tile (AVX-512).</summary>
    public const int TokenTile = 8;

    /// <summary>Tokens per register tile on AVX2.</summary>
    public const int TokenTileAvx2 = Tile2x6.Tokens;

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
        if (w.Format == WeightFormat.Q8)
            throw new ArgumentException($"a Q8 matrix multiplies activations quantized to Q8 blocks: {nameof(RowsQ8)}");
        if (isa == KernelIsa.Scalar)
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
                Block(w.F32 + (long)b0 * cols, b1 - b0, cols, x, xStride, count, y + b0, yStride, isa);
                continue;
            }

            var widened = t_widened;
            if (widened is null || widened.Length < BlockRows * cols + 16)
                t_widened = widened = GC.AllocateUninitializedArray<float>(BlockRows * cols + 16, pinned: true);
            // Rows from a 64-byte boundary, as a packed matrix's are: a vector load that straddles two cache lines
            // costs a second access on every other load.
            fixed (float* buffer = widened)
            {
                float* rows = (float*)(((nint)buffer + 63) & ~(nint)63);
                for (int r = b0; r < b1; r++)
                    w.DequantizeRow(r, new Span<float>(rows + (long)(r - b0) * cols, cols));
                Block(rows, b1 - b0, cols, x, xStride, count, y + b0, yStride, isa);
            }
        }
    }

    /// <summary>
    /// Rows <c>[r0, r1)</c> of a Q8 matrix times the first <paramref name="count"/> rows of <paramref name="x"/>, written
    /// to <paramref name="y"/> at <c>t · yStride + r</c>: <see cref="MatVecQ8"/>'s kernel, whose arithmetic per token does
    /// not depend on the batch, so prefill and decoding agree bit for bit.
    /// </summary>
    public static void RowsQ8(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1, KernelIsa isa) =>
        MatVecQ8.Rows(w, x, count, y, yStride, r0, r1, isa);

    /// <summary><paramref name="n"/> float32 rows <c>[n, cols]</c> at <paramref name="rows"/> times every token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block(float* rows, int n, int cols, float* x, int xStride, int count, float* y, int yStride, KernelIsa isa)
    {
        int slices = (cols + MaxDepth - 1) / MaxDepth;
        int tile = isa == KernelIsa.Avx512 ? TokenTile : TokenTileAvx2;
        var xs = stackalloc float*[TokenTile];
        for (int s = 0; s < slices; s++)
        {
            // Equal slices, each a multiple of 16 columns except the last.
            int c0 = (int)((long)cols * s / slices) & ~15, c1 = s == slices - 1 ? cols : (int)((long)cols * (s + 1) / slices) & ~15;
            bool accumulate = s > 0;
            for (int t0 = 0; t0 < count; t0 += tile)
            {
                int tokens = Math.Min(tile, count - t0);
                for (int j = 0; j < tile; j++)
                    xs[j] = x + (long)(t0 + (j < tokens ? j : 0)) * xStride + c0;
                for (int r = 0; r < n; r += 2)
                {
                    float* a = rows + (long)r * cols + c0;
                    float* b = r + 1 < n ? a + cols : a;
                    Tile(a, b, xs, c1 - c0, y + (long)t0 * yStride + r, yStride, tokens, r + 1 < n, accumulate, isa);
                }
            }
        }
    }

    /// <summary>One <see cref="Tile2x8"/> (AVX-512) or <see cref="Tile2x6"/> written to <c>y</c> (added to it after the
    /// first depth slice).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile(float* wa, float* wb, float** x, int depth, float* y, int yStride, int tokens, bool two, bool accumulate,
        KernelIsa isa)
    {
        var (sa, sb) = isa == KernelIsa.Avx512 ? Tile2x8.Dot<Float32Rows>(wa, wb, x, depth, null, 0) : Tile2x6.Dot(wa, wb, x, depth);
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
}
