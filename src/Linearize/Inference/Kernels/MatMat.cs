// Repeats by design (what `duplicates` lists here): the file header has the same shape as MatVec.cs's (usings, a
// static class of kernel constants).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Matrix × matrix for prefill: <c>y[t, r] = Σ_c W[r, c] · x[t, c]</c> over a block of rows and many tokens. Unlike
/// decoding, this is compute-bound, so the work is arranged for the FMA units rather than for one pass over memory.
/// A block of <see cref="BlockRows"/> rows is read as float32 (in place, or widened once per block into a per-thread
/// buffer: bfloat16 is expanded once and reused for every token — the arithmetic stays float32, as in decoding).
/// With AVX-512 the tokens are transposed into panels (<see cref="TokenPanels"/>) and each 8 rows × 48 tokens are one
/// broadcast-form register tile (<see cref="PanelTile"/>): 24 FMAs per 11 loads, no horizontal sums, and each (row,
/// token) one FMA chain over the columns, whatever the tiling. With AVX2's 16 registers the tile is 2 rows ×
/// <see cref="TokenTileAvx2"/> tokens of dot products (<see cref="Tile2x6"/>) over depth slices of at most
/// <see cref="MaxDepth"/> columns. The scalar level falls back to <see cref="MatVec"/>. Q8 weights multiply quantized
/// activations (<see cref="RowsQ8"/>). The naive twin is <see cref="NaiveMatVec"/>.
/// </summary>
public static unsafe class MatMat
{
    /// <summary>Rows per work unit: the unit a thread claims, and the rows widened to float32 at once.</summary>
    public const int BlockRows = 16;

    /// <summary>Tokens per register tile on AVX2.</summary>
    public const int TokenTileAvx2 = Tile2x6.Tokens;

    /// <summary>Largest depth slice (columns) the AVX2 tile accumulates in registers before the partial sums go to memory,
    /// so its activations (6 × 2 KiB) stay in L1 beside the two rows streaming through.</summary>
    public const int MaxDepth = 512;

    [ThreadStatic]
    private static float[]? t_widened;

    [ThreadStatic]
    private static TokenPanels? t_panels;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times <paramref name="count"/> vectors at <paramref name="x"/> (stride
    /// <paramref name="xStride"/>), written to <paramref name="y"/> at <c>t · yStride + r</c>. With AVX-512 the vectors
    /// are first transposed into a per-thread <see cref="TokenPanels"/> (the engine transposes once per product and calls
    /// the overload that takes them).
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

        if (isa == KernelIsa.Avx512)
        {
            var panels = t_panels ??= new TokenPanels();
            panels.Fill(x, xStride, count, w.Cols);
            Rows(w, panels, y, yStride, r0, r1);
            return;
        }

        int cols = w.Cols;
        for (int b0 = r0; b0 < r1; b0 += BlockRows)
        {
            int b1 = Math.Min(r1, b0 + BlockRows);
            Tiles2x6(BlockOf(w, b0, b1), b1 - b0, cols, x, xStride, count, y + b0, yStride);
        }
    }

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times every token of <paramref name="x"/> (AVX-512), written to
    /// <paramref name="y"/> at <c>t · yStride + r</c>: per block of rows, <see cref="PanelTile"/>s of 8 rows × each
    /// panel, the rows streaming from L1 while a panel's columns stream through.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(PackedMatrix w, TokenPanels x, float* y, int yStride, int r0, int r1)
    {
        if (w.Format == WeightFormat.Q8)
            throw new ArgumentException($"a Q8 matrix multiplies activations quantized to Q8 blocks: {nameof(RowsQ8)}");
        if (x.Cols != w.Cols)
            throw new ArgumentException($"a [{w.Rows}, {w.Cols}] matrix cannot take {x.Count} panelled rows of {x.Cols}");
        int cols = w.Cols, count = x.Count;
        var rows = stackalloc float*[PanelTile.Rows];
        var tile = stackalloc float[PanelTile.Rows * TokenPanels.PanelTokens + 16];
        float* o = (float*)(((nint)tile + 63) & ~(nint)63);
        for (int b0 = r0; b0 < r1; b0 += BlockRows)
        {
            int b1 = Math.Min(r1, b0 + BlockRows), n = b1 - b0;
            float* block = BlockOf(w, b0, b1);
            for (int g = 0; g < n; g += PanelTile.Rows)
            {
                int live = Math.Min(PanelTile.Rows, n - g);
                for (int i = 0; i < PanelTile.Rows; i++)
                    rows[i] = block + (long)(g + Math.Min(i, live - 1)) * cols; // a short group repeats its last row
                for (int p = 0; p < x.Panels; p++)
                {
                    int width = x.Width(p), first = p * TokenPanels.PanelTokens, tokens = Math.Min(width, count - first);
                    float* panel = x.Panel(p);
                    if (width == 48)
                        PanelTile.Tile48(rows, panel, cols, o);
                    else if (width == 32)
                        PanelTile.Tile32(rows, panel, cols, o);
                    else
                        PanelTile.Tile16(rows, panel, cols, o);
                    float* yg = y + (long)first * yStride + b0 + g;
                    int j = 0;
                    if (live == PanelTile.Rows) // 8 rows × 8 tokens at once: a token's 8 rows are adjacent in y
                        for (; j + 8 <= tokens; j += 8)
                            TokenPanels.Transpose8(o + j, TokenPanels.PanelTokens, yg + (long)j * yStride, yStride);
                    for (; j < tokens; j++)
                        for (int i = 0; i < live; i++)
                            yg[(long)j * yStride + i] = o[i * TokenPanels.PanelTokens + j];
                }
            }
        }
    }

    /// <summary>Rows <c>[b0, b1)</c> (at most <see cref="BlockRows"/>) as float32: in place for a float32 matrix, else
    /// widened into this thread's buffer (bfloat16 is expanded once per block and reused for every token).</summary>
    private static float* BlockOf(PackedMatrix w, int b0, int b1)
    {
        int cols = w.Cols;
        if (w.Format == WeightFormat.Float32)
            return w.F32 + (long)b0 * cols;
        var widened = t_widened;
        if (widened is null || widened.Length < BlockRows * cols + 16)
            t_widened = widened = GC.AllocateUninitializedArray<float>(BlockRows * cols + 16, pinned: true);
        // Rows from a 64-byte boundary, as a packed matrix's are: a vector load that straddles two cache lines costs a
        // second access on every other load. The array is pinned, so the address outlives this call.
        float* rows = (float*)(((nint)Unsafe.AsPointer(ref widened[0]) + 63) & ~(nint)63);
        for (int r = b0; r < b1; r++)
            w.DequantizeRow(r, new Span<float>(rows + (long)(r - b0) * cols, cols));
        return rows;
    }

    /// <summary>
    /// Rows <c>[r0, r1)</c> of a Q8 matrix times the first <paramref name="count"/> rows of <paramref name="x"/>, written
    /// to <paramref name="y"/> at <c>t · yStride + r</c>: <see cref="MatVecQ8"/>'s kernel, whose arithmetic per token does
    /// not depend on the batch, so prefill and decoding agree bit for bit.
    /// </summary>
    public static void RowsQ8(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1, KernelIsa isa) =>
        MatVecQ8.Rows(w, x, count, y, yStride, r0, r1, isa);

    /// <summary><paramref name="n"/> float32 rows <c>[n, cols]</c> at <paramref name="rows"/> times every token (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles2x6(float* rows, int n, int cols, float* x, int xStride, int count, float* y, int yStride)
    {
        int slices = (cols + MaxDepth - 1) / MaxDepth;
        const int tile = TokenTileAvx2;
        var xs = stackalloc float*[tile];
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
                    var (sa, sb) = Tile2x6.Dot(a, b, xs, c1 - c0);
                    float* yt = y + (long)t0 * yStride + r;
                    for (int j = 0; j < tokens; j++)
                    {
                        float* yj = yt + (long)j * yStride;
                        if (accumulate)
                        {
                            yj[0] += sa.GetElement(j);
                            if (r + 1 < n)
                                yj[1] += sb.GetElement(j);
                        }
                        else
                        {
                            yj[0] = sa.GetElement(j);
                            if (r + 1 < n)
                                yj[1] = sb.GetElement(j);
                        }
                    }
                }
            }
        }
    }
}
