using System.Runtime.CompilerServices;
using Linearize.Inference.Kernels.Native;

namespace Linearize.Inference.Kernels;

/// <summary>
/// A <see cref="WeightFormat.BFloat16"/> matrix times activations rounded to bfloat16 (<see cref="BFloat16Activations"/>),
/// for <see cref="EngineOptions.BFloat16Products"/>: <c>y[t, r] = Σ_c W[r, c] · x[t, c]</c> with both factors bfloat16
/// and float32 sums, llama.cpp's BF16 × BF16 product. The weights stay bfloat16 (nothing is widened), and with
/// AVX512-BF16 each <c>vdpbf16ps</c> does 32 multiply-adds where a float32 FMA does 16 — prefill is bound by that
/// rate (<see cref="MatMat"/>). Native tiles of 4 rows × up to 6 tokens (<see cref="NativeBFloat16Tiles"/>) where the
/// CPU has the instruction; elsewhere <see cref="BFloat16Dot.Dot4Rows"/> for one token and managed tiles of 2 rows × 4 tokens
/// (<see cref="BFloat16Tile2x4"/>) for several; the naive twin is <see cref="BFloat16Dot.Scalar"/>.
/// </summary>
/// <remarks>Every dot product follows <see cref="BFloat16Dot"/>'s order whatever the tile, the slot it sits in or the
/// number of tokens, so the kernel is batch-invariant by construction: decoding (any batch) and prefill (any block) use
/// it alike and agree bit for bit, and the native and managed paths give the same bits. The rows of a block of
/// <see cref="BlockRows"/> take each tile of tokens in turn, so the tokens' rows stay in L1 while the block's rows
/// stream from L2.</remarks>
public static unsafe class MatMulBFloat16
{
    /// <summary>Rows that share each tile of tokens (the unit a prefill thread claims is <see cref="MatMat.BlockRows"/>).</summary>
    public const int BlockRows = 16;

    /// <summary>
    /// Decoding without <c>vdpbf16ps</c> (<see cref="BFloat16Dot.Dot4Rows"/>): the largest group of four rows whose
    /// successor is prefetched as a group. One AVX2 core over four-row groups, GB/s against merely reading the bytes:
    /// with 1,024- and 2,048-column rows (groups of 8 and 16 KiB) prefetching the next group gave 20.2 and 23.2 against
    /// 16.1 and 22.3 per stream; with 3,072 and 4,096 columns (24 and 32 KiB, the size of L1) 21.5 and 24.3 against 25.2
    /// and 27.6 per stream (reading: 24.5–25.2).
    /// </summary>
    internal const int NextGroupPrefetchMaxBytes = 16 * 1024;

    /// <summary>How far ahead each row's own stream is prefetched in groups too large for
    /// <see cref="NextGroupPrefetchMaxBytes"/> (the Llama-3-8B shape's matrices on one AVX2 core: 26.2, 25.0 and 23.7 GB/s
    /// at 512, 1,024 and 4,096 bytes; 24.0 without prefetching, 20.3 prefetching the next group).</summary>
    internal const int StreamPrefetchBytes = 512;

    /// <summary>
    /// Rows <c>[r0, r1)</c> of <paramref name="w"/> times the first <paramref name="count"/> rows of <paramref name="x"/>,
    /// written to <paramref name="y"/> at <c>t · yStride + r</c>. Native tiles when <paramref name="isa"/> is
    /// <see cref="KernelIsa.Avx512"/> and the CPU has AVX512-BF16.
    /// </summary>
    public static void Rows(PackedMatrix w, BFloat16Activations x, int count, float* y, int yStride, int r0, int r1, KernelIsa isa) =>
        Rows(w, x, count, y, yStride, r0, r1, native: isa == KernelIsa.Avx512 && NativeBFloat16Tiles.IsSupported);

    /// <summary>Which path <see cref="Rows(PackedMatrix, BFloat16Activations, int, float*, int, int, int, KernelIsa)"/>
    /// takes with <paramref name="isa"/>, for reports.</summary>
    public static string Describe(KernelIsa isa) =>
        isa == KernelIsa.Avx512 && NativeBFloat16Tiles.IsSupported ? "vdpbf16ps" : "vdpbf16ps emulated with FMA";

    /// <summary>The kernel with the path chosen (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows(PackedMatrix w, BFloat16Activations x, int count, float* y, int yStride, int r0, int r1, bool native)
    {
        if (w.Format != WeightFormat.BFloat16 || w.Parts is not null || x.Cols != w.Cols || (uint)count > (uint)x.Count || r0 < 0 || r1 > w.Rows)
            throw new ArgumentException($"rows [{r0}, {r1}) of a {w.Format} [{w.Rows}, {w.Cols}]{(w.Parts is null ? "" : " stack")} " +
                                        $"times {count} of {x.Count} bfloat16 rows of {x.Cols}");
        int cols = w.Cols;
        if (!native)
        {
            if (count == 1)
            {
                bool shortRows = 4L * cols * sizeof(ushort) <= NextGroupPrefetchMaxBytes;
                int r = r0;
                for (; r + 4 <= r1; r += 4)
                {
                    ushort* row = w.Bf16 + (long)r * cols;
                    byte* next = shortRows && r + 8 <= r1 ? (byte*)(row + 4L * cols) : null;
                    BFloat16Dot.Dot4Rows(row, row + cols, row + 2 * cols, row + 3 * cols, x.Row(0), cols, y + r, next,
                        shortRows ? 0 : StreamPrefetchBytes);
                }

                for (; r < r1; r++)
                    y[r] = BFloat16Dot.Dot(w.Bf16 + (long)r * cols, x.Row(0), cols);
            }
            else
                ManagedTiles(w, x, count, y, yStride, r0, r1);
            return;
        }

        const int tileRows = NativeBFloat16Tiles.Rows, tileTokens = NativeBFloat16Tiles.MaxTokens;
        var wp = stackalloc ushort*[tileRows];
        var xp = stackalloc ushort*[tileTokens];
        var sums = stackalloc float[tileRows * tileTokens];
        if (count == 1)
        {
            // Decoding: the tile's four rows a quarter of the range apart, four sequential streams rather than one four
            // rows wide — what a matrix × vector from memory is short of (docs/RESULTS.md, "Decoding from memory,
            // longer runs"). Each (row, token) sum is the same whichever rows share the tile.
            int quarter = (r1 - r0) / tileRows;
            xp[0] = x.Row(0);
            for (int r = r0; r < r0 + quarter; r++)
            {
                for (int i = 0; i < tileRows; i++)
                    wp[i] = w.Bf16 + (long)(r + i * quarter) * cols;
                NativeBFloat16Tiles.Tile(wp, xp, 1, cols, sums);
                for (int i = 0; i < tileRows; i++)
                    y[r + i * quarter] = sums[i];
            }

            r0 += tileRows * quarter;
        }

        for (int b0 = r0; b0 < r1; b0 += BlockRows)
        {
            int b1 = Math.Min(r1, b0 + BlockRows);
            for (int t0 = 0; t0 < count; t0 += tileTokens)
            {
                int tokens = Math.Min(tileTokens, count - t0);
                for (int j = 0; j < tokens; j++)
                    xp[j] = x.Row(t0 + j);
                for (int r = b0; r < b1; r += tileRows)
                {
                    // A block's last rows, fewer than a tile: the last row is repeated and its copies dropped.
                    int rows = Math.Min(tileRows, b1 - r);
                    for (int i = 0; i < tileRows; i++)
                        wp[i] = w.Bf16 + (long)(r + Math.Min(i, rows - 1)) * cols;
                    NativeBFloat16Tiles.Tile(wp, xp, tokens, cols, sums);
                    Store(sums, tileRows, rows, tokens, y + (long)t0 * yStride + r, yStride);
                }
            }
        }
    }

    /// <summary>The managed path for several tokens: <see cref="BFloat16Tile2x4"/> over blocks of <see cref="BlockRows"/>
    /// rows, as the native path walks them. A tile short of rows or tokens repeats its last one and drops the copies.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ManagedTiles(PackedMatrix w, BFloat16Activations x, int count, float* y, int yStride, int r0, int r1)
    {
        const int tileRows = BFloat16Tile2x4.Rows, tileTokens = BFloat16Tile2x4.Tokens;
        int cols = w.Cols;
        var xp = stackalloc float*[tileTokens];
        var sums = stackalloc float[tileRows * tileTokens];
        for (int b0 = r0; b0 < r1; b0 += BlockRows)
        {
            int b1 = Math.Min(r1, b0 + BlockRows);
            for (int t0 = 0; t0 < count; t0 += tileTokens)
            {
                int tokens = Math.Min(tileTokens, count - t0);
                for (int j = 0; j < tileTokens; j++)
                    xp[j] = x.Split(t0 + Math.Min(j, tokens - 1));
                for (int r = b0; r < b1; r += tileRows)
                {
                    int rows = Math.Min(tileRows, b1 - r);
                    ushort* wa = w.Bf16 + (long)r * cols;
                    BFloat16Tile2x4.Dot(wa, rows > 1 ? wa + cols : wa, xp, cols, sums);
                    Store(sums, tileRows, rows, tokens, y + (long)t0 * yStride + r, yStride);
                }
            }
        }
    }

    /// <summary>A tile's sums (<c>sums[j · tileRows + i]</c>) for its first <paramref name="rows"/> rows and
    /// <paramref name="tokens"/> tokens to <c>y[j · yStride + i]</c>; the repeated rows and tokens are dropped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* sums, int tileRows, int rows, int tokens, float* y, int yStride)
    {
        for (int j = 0; j < tokens; j++)
        {
            float* yj = y + (long)j * yStride;
            for (int i = 0; i < rows; i++)
                yj[i] = sums[j * tileRows + i];
        }
    }
}
