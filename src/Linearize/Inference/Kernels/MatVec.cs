// Repeats by design (what `duplicates` lists here): Dot4Invariant spells out its 4 vectors × 4 accumulators, and
// Dot4Rows its 4 rows × 4 accumulators, because the JIT keeps locals — not array elements — in registers; each line is
// one accumulator of one vector's (or one row's) Dot sum.
// The file header has the same shape as MatMat.cs's (usings, a static class of kernel constants), nothing more.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Matrix × vector(s) over a range of rows of a <see cref="PackedMatrix"/>: <c>y[b, r] = Σ_c W[r, c] · x[b, c]</c> for
/// <c>b &lt; count</c>. Decoding is memory-bound (every weight is read once per step), so the kernels stream each row
/// once and, for a batch, multiply it with every vector while it sits in L1 — rows outer, vectors inner, in tiles of
/// four — which is why batch N costs little more than batch 1. Float32 accumulation in vector lanes; the naive twin is
/// <see cref="NaiveMatVec"/>. Float32 and bfloat16 weights only: a <see cref="WeightFormat.Q8"/> matrix multiplies
/// activations quantized to Q8 blocks, in <see cref="MatVecQ8"/>.
/// </summary>
/// <remarks>Each kernel is written once over the vector width (<see cref="IFloatVector{TSelf, TV}"/>: <see cref="Vec512"/>
/// for AVX-512, <see cref="Vec256"/> for AVX2) and the row format (<see cref="IRowLoader"/>); the JIT compiles a copy
/// per pair. Tiles that keep more accumulators live than AVX2 has registers run on AVX-512 only (see
/// <see cref="IFloatVector{TSelf, TV}.Registers"/> and <see cref="Tile2x8"/>). The scalar level is the plain sequential
/// sum — its own order, not a one-lane vector — so it stays the simplest reference on any CPU.</remarks>
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
        switch (isa)
        {
            case KernelIsa.Avx512:
                Rows<Vec512, Vector512<float>>(w, x, xStride, count, y, yStride, r0, r1, batchInvariant);
                break;
            case KernelIsa.Avx2:
                Rows<Vec256, Vector256<float>>(w, x, xStride, count, y, yStride, r0, r1, batchInvariant);
                break;
            default:
                RowsScalar(w, x, xStride, count, y, yStride, r0, r1);
                break;
        }
    }

    private static ArgumentException Q8NeedsQuantizedActivations(PackedMatrix w) =>
        new($"a {w.Format} matrix multiplies activations quantized to Q8 blocks: {nameof(MatVecQ8)}.{nameof(MatVecQ8.Rows)}");

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TVec, TV>(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, int r0, int r1,
        bool batchInvariant) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged
    {
        switch (w.Format)
        {
            case WeightFormat.Float32:
                Dense<TVec, TV, Float32Rows>(w.F32, w.Cols, x, xStride, count, y, yStride, r0, r1, batchInvariant);
                break;
            case WeightFormat.BFloat16:
                Dense<TVec, TV, BFloat16Rows>(w.Bf16, w.Cols, x, xStride, count, y, yStride, r0, r1, batchInvariant);
                break;
            default:
                throw Q8NeedsQuantizedActivations(w);
        }
    }

    /// <summary>Every vector alone, one sequential sum per dot product: batch-invariant by construction, so one loop
    /// serves both modes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsScalar(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, int r0, int r1)
    {
        int cols = w.Cols;
        for (int r = r0; r < r1; r++)
            for (int b = 0; b < count; b++)
            {
                float* xb = x + (long)b * xStride;
                y[(long)b * yStride + r] = w.Format switch
                {
                    WeightFormat.Float32 => DotScalar<Float32Rows>(w.F32 + (long)r * cols, xb, cols),
                    WeightFormat.BFloat16 => DotScalar<BFloat16Rows>(w.Bf16 + (long)r * cols, xb, cols),
                    _ => throw Q8NeedsQuantizedActivations(w),
                };
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dense<TVec, TV, TRow>(void* data, int cols, float* x, int xStride, int count, float* y, int yStride,
        int r0, int r1, bool batchInvariant) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged where TRow : IRowLoader
    {
        long rowBytes = (long)cols * TRow.ElementSize;
        int r = r0;
        if (batchInvariant && count > 1)
        {
            for (; r < r1; r++)
            {
                void* row = (byte*)data + r * rowBytes;
                int b = 0;
                // Four vectors share each weight load where their 16 accumulators and 4 weight vectors fit the registers.
                if (TVec.Registers >= Tile * Tile + Tile)
                    for (; b + Tile <= count; b += Tile)
                    {
                        float* x0 = x + (long)b * xStride;
                        var s = Dot4Invariant<TVec, TV, TRow>(row, x0, x0 + xStride, x0 + 2L * xStride, x0 + 3L * xStride, cols);
                        Store(y + (long)b * yStride + r, yStride, s, Tile);
                    }

                for (; b < count; b++)
                    y[(long)b * yStride + r] = Dot<TVec, TV, TRow>(row, x + (long)b * xStride, cols);
            }

            return;
        }

        if (count > 1 && typeof(TVec) == typeof(Vec512))
        {
            // Two rows × up to eight vectors per pass (16 accumulators): each weight chunk is loaded once for the
            // whole tile and each x chunk feeds both rows — 10 loads per 16 FMAs.
            var xs = stackalloc float*[WideTile];
            for (; r + 2 <= r1; r += 2)
            {
                void* rowA = (byte*)data + r * rowBytes;
                void* rowB = (byte*)rowA + rowBytes;
                for (int b0 = 0; b0 < count; b0 += WideTile)
                {
                    int n = Math.Min(WideTile, count - b0);
                    for (int j = 0; j < WideTile; j++)
                        xs[j] = x + (long)(b0 + (j < n ? j : 0)) * xStride;
                    // The next pair is prefetched during the first tile (see Tile2x8.Dot).
                    byte* prefetch = b0 == 0 && r + 4 <= r1 ? (byte*)rowA + 2 * rowBytes : null;
                    var (sa, sb) = Tile2x8.Dot<TRow>(rowA, rowB, xs, cols, prefetch, 2 * rowBytes);
                    float* ya = y + (long)b0 * yStride + r;
                    for (int j = 0; j < n; j++)
                    {
                        ya[j * (long)yStride] = sa.GetElement(j);
                        ya[j * (long)yStride + 1] = sb.GetElement(j);
                    }
                }
            }
        }

        if (count == 1 && TVec.Registers >= 4 * Tile + 2 && rowBytes <= SpreadMaxRowBytes)
        {
            // Short rows: the four a quarter of the range apart (see SpreadMaxRowBytes); each row's sum is Dot4Rows's
            // whichever rows share the call.
            int quarter = (r1 - r) / Tile;
            long step = quarter * rowBytes;
            for (int j = 0; j < quarter; j++)
            {
                byte* row0 = (byte*)data + (r + j) * rowBytes;
                var s = Dot4Rows<TVec, TV, TRow>(row0, row0 + step, row0 + 2 * step, row0 + 3 * step, x, cols);
                for (int i = 0; i < Tile; i++)
                    y[r + j + i * quarter] = s.GetElement(i);
            }

            r += Tile * quarter;
        }
        else if (count == 1 && TVec.Registers >= 4 * Tile + 2)
            for (; r + Tile <= r1; r += Tile)
            {
                byte* row0 = (byte*)data + r * rowBytes;
                Dot4Rows<TVec, TV, TRow>(row0, row0 + rowBytes, row0 + 2 * rowBytes, row0 + 3 * rowBytes, x, cols).Store(y + r);
            }

        for (; r < r1; r++)
        {
            void* row = (byte*)data + r * rowBytes;
            if (count == 1)
            {
                y[r] = Dot<TVec, TV, TRow>(row, x, cols);
                continue;
            }

            for (int b0 = 0; b0 < count; b0 += Tile)
            {
                int n = Math.Min(Tile, count - b0);
                float* x0 = x + (long)b0 * xStride;
                float* x1 = n > 1 ? x0 + xStride : x0, x2 = n > 2 ? x0 + 2L * xStride : x0, x3 = n > 3 ? x0 + 3L * xStride : x0;
                Store(y + (long)b0 * yStride + r, yStride, Dot4<TVec, TV, TRow>(row, x0, x1, x2, x3, cols), n);
            }
        }
    }

    /// <summary>The first <paramref name="n"/> of four results to <c>y[j · yStride]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int yStride, Vector128<float> s, int n)
    {
        y[0] = s.GetElement(0);
        if (n > 1) y[yStride] = s.GetElement(1);
        if (n > 2) y[2L * yStride] = s.GetElement(2);
        if (n > 3) y[3L * yStride] = s.GetElement(3);
    }

    /// <summary>One vector: four accumulators over blocks of four vectors (independent FMA chains to cover the FMA
    /// latency), then single vectors into the first, one reduction, and a scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TVec, TV, TRow>(void* row, float* x, int n) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged where TRow : IRowLoader
    {
        int w = TVec.Count;
        TV a0 = TVec.Zero, a1 = TVec.Zero, a2 = TVec.Zero, a3 = TVec.Zero;
        int i = 0;
        for (; i + 4 * w <= n; i += 4 * w)
        {
            a0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(row, i), TVec.Load(x + i), a0);
            a1 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(row, i + w), TVec.Load(x + i + w), a1);
            a2 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(row, i + 2 * w), TVec.Load(x + i + 2 * w), a2);
            a3 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(row, i + 3 * w), TVec.Load(x + i + 3 * w), a3);
        }

        for (; i + w <= n; i += w)
            a0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(row, i), TVec.Load(x + i), a0);
        float s = TVec.Sum(TVec.Add(TVec.Add(a0, a1), TVec.Add(a2, a3)));
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
    /// Longest row (bytes) that a lone vector's product reads as four rows a quarter of the range apart rather than four
    /// adjacent ones. Four adjacent short rows are one region a few KiB long, one stream to the memory; spread apart
    /// they are four. Measured (2 threads, Zen 5): stories110M's 3 KiB float32 rows 9.16 → 8.70 ms per step (teacher)
    /// and 9.30 → 7.17 (Liger-GLA); the Llama-3.2-1B shape's 8 KiB rows were at their floor already, and spreading them
    /// lost 0.95–1.02 → 0.85–0.99 of it (docs/RESULTS.md, "Decoding from memory, longer runs").
    /// </summary>
    internal const long SpreadMaxRowBytes = 4096;

    /// <summary>
    /// Four rows times one vector, each row summed exactly as <see cref="Dot{TVec, TV, TRow}"/> sums it (its own four
    /// accumulators over the same blocks, the same reduction and tail), so the results are that method's bit for bit.
    /// Decoding then reads four rows side by side rather than one after another, and loads each chunk of the vector
    /// once for the four. 16 accumulators + a vector chunk + a weight chunk: where <see cref="IFloatVector{TSelf, TV}.Registers"/> allows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4Rows<TVec, TV, TRow>(void* r0, void* r1, void* r2, void* r3, float* x, int n)
        where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged where TRow : IRowLoader
    {
        int w = TVec.Count;
        TV a0 = TVec.Zero, a1 = TVec.Zero, a2 = TVec.Zero, a3 = TVec.Zero;
        TV b0 = TVec.Zero, b1 = TVec.Zero, b2 = TVec.Zero, b3 = TVec.Zero;
        TV c0 = TVec.Zero, c1 = TVec.Zero, c2 = TVec.Zero, c3 = TVec.Zero;
        TV d0 = TVec.Zero, d1 = TVec.Zero, d2 = TVec.Zero, d3 = TVec.Zero;
        int i = 0;
        for (; i + 4 * w <= n; i += 4 * w)
        {
            var x0 = TVec.Load(x + i);
            a0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r0, i), x0, a0);
            b0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r1, i), x0, b0);
            c0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r2, i), x0, c0);
            d0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r3, i), x0, d0);
            var x1 = TVec.Load(x + i + w);
            a1 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r0, i + w), x1, a1);
            b1 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r1, i + w), x1, b1);
            c1 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r2, i + w), x1, c1);
            d1 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r3, i + w), x1, d1);
            var x2 = TVec.Load(x + i + 2 * w);
            a2 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r0, i + 2 * w), x2, a2);
            b2 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r1, i + 2 * w), x2, b2);
            c2 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r2, i + 2 * w), x2, c2);
            d2 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r3, i + 2 * w), x2, d2);
            var x3 = TVec.Load(x + i + 3 * w);
            a3 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r0, i + 3 * w), x3, a3);
            b3 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r1, i + 3 * w), x3, b3);
            c3 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r2, i + 3 * w), x3, c3);
            d3 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r3, i + 3 * w), x3, d3);
        }

        for (; i + w <= n; i += w)
        {
            var xi = TVec.Load(x + i);
            a0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r0, i), xi, a0);
            b0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r1, i), xi, b0);
            c0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r2, i), xi, c0);
            d0 = TVec.FusedMultiplyAdd(TRow.Load<TVec, TV>(r3, i), xi, d0);
        }

        float sa = TVec.Sum(TVec.Add(TVec.Add(a0, a1), TVec.Add(a2, a3)));
        float sb = TVec.Sum(TVec.Add(TVec.Add(b0, b1), TVec.Add(b2, b3)));
        float sc = TVec.Sum(TVec.Add(TVec.Add(c0, c1), TVec.Add(c2, c3)));
        float sd = TVec.Sum(TVec.Add(TVec.Add(d0, d1), TVec.Add(d2, d3)));
        for (; i < n; i++)
        {
            sa += TRow.Load1(r0, i) * x[i];
            sb += TRow.Load1(r1, i) * x[i];
            sc += TRow.Load1(r2, i) * x[i];
            sd += TRow.Load1(r3, i) * x[i];
        }

        return Vector128.Create(sa, sb, sc, sd);
    }

    /// <summary>
    /// Four vectors at once, each summed exactly as <see cref="Dot{TVec, TV, TRow}"/> sums one (the same four accumulators
    /// per vector over blocks of four vectors, the same single-vector tail and scalar tail, the same final reduction),
    /// so the results are bit-identical to four separate calls while each loaded weight chunk feeds four vectors: 16
    /// accumulators + 4 weight registers, so it runs where <see cref="IFloatVector{TSelf, TV}.Registers"/> allows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4Invariant<TVec, TV, TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n)
        where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged where TRow : IRowLoader
    {
        int w = TVec.Count;
        TV a00 = TVec.Zero, a01 = TVec.Zero, a02 = TVec.Zero, a03 = TVec.Zero;
        TV a10 = TVec.Zero, a11 = TVec.Zero, a12 = TVec.Zero, a13 = TVec.Zero;
        TV a20 = TVec.Zero, a21 = TVec.Zero, a22 = TVec.Zero, a23 = TVec.Zero;
        TV a30 = TVec.Zero, a31 = TVec.Zero, a32 = TVec.Zero, a33 = TVec.Zero;
        int i = 0;
        for (; i + 4 * w <= n; i += 4 * w)
        {
            var w0 = TRow.Load<TVec, TV>(row, i);
            var w1 = TRow.Load<TVec, TV>(row, i + w);
            var w2 = TRow.Load<TVec, TV>(row, i + 2 * w);
            var w3 = TRow.Load<TVec, TV>(row, i + 3 * w);
            a00 = TVec.FusedMultiplyAdd(w0, TVec.Load(x0 + i), a00);
            a01 = TVec.FusedMultiplyAdd(w1, TVec.Load(x0 + i + w), a01);
            a02 = TVec.FusedMultiplyAdd(w2, TVec.Load(x0 + i + 2 * w), a02);
            a03 = TVec.FusedMultiplyAdd(w3, TVec.Load(x0 + i + 3 * w), a03);
            a10 = TVec.FusedMultiplyAdd(w0, TVec.Load(x1 + i), a10);
            a11 = TVec.FusedMultiplyAdd(w1, TVec.Load(x1 + i + w), a11);
            a12 = TVec.FusedMultiplyAdd(w2, TVec.Load(x1 + i + 2 * w), a12);
            a13 = TVec.FusedMultiplyAdd(w3, TVec.Load(x1 + i + 3 * w), a13);
            a20 = TVec.FusedMultiplyAdd(w0, TVec.Load(x2 + i), a20);
            a21 = TVec.FusedMultiplyAdd(w1, TVec.Load(x2 + i + w), a21);
            a22 = TVec.FusedMultiplyAdd(w2, TVec.Load(x2 + i + 2 * w), a22);
            a23 = TVec.FusedMultiplyAdd(w3, TVec.Load(x2 + i + 3 * w), a23);
            a30 = TVec.FusedMultiplyAdd(w0, TVec.Load(x3 + i), a30);
            a31 = TVec.FusedMultiplyAdd(w1, TVec.Load(x3 + i + w), a31);
            a32 = TVec.FusedMultiplyAdd(w2, TVec.Load(x3 + i + 2 * w), a32);
            a33 = TVec.FusedMultiplyAdd(w3, TVec.Load(x3 + i + 3 * w), a33);
        }

        for (; i + w <= n; i += w)
        {
            var wv = TRow.Load<TVec, TV>(row, i);
            a00 = TVec.FusedMultiplyAdd(wv, TVec.Load(x0 + i), a00);
            a10 = TVec.FusedMultiplyAdd(wv, TVec.Load(x1 + i), a10);
            a20 = TVec.FusedMultiplyAdd(wv, TVec.Load(x2 + i), a20);
            a30 = TVec.FusedMultiplyAdd(wv, TVec.Load(x3 + i), a30);
        }

        var s = Vector128.Create(TVec.Sum(TVec.Add(TVec.Add(a00, a01), TVec.Add(a02, a03))), TVec.Sum(TVec.Add(TVec.Add(a10, a11), TVec.Add(a12, a13))),
            TVec.Sum(TVec.Add(TVec.Add(a20, a21), TVec.Add(a22, a23))), TVec.Sum(TVec.Add(TVec.Add(a30, a31), TVec.Add(a32, a33))));
        return AddTail<TRow>(s, row, x0, x1, x2, x3, i, n);
    }

    /// <summary>Four vectors sharing each weight load, one accumulator each (the tiled, not batch-invariant, path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4<TVec, TV, TRow>(void* row, float* x0, float* x1, float* x2, float* x3, int n)
        where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged where TRow : IRowLoader
    {
        TV a0 = TVec.Zero, a1 = TVec.Zero, a2 = TVec.Zero, a3 = TVec.Zero;
        int i = 0;
        for (; i + TVec.Count <= n; i += TVec.Count)
        {
            var wv = TRow.Load<TVec, TV>(row, i);
            a0 = TVec.FusedMultiplyAdd(wv, TVec.Load(x0 + i), a0);
            a1 = TVec.FusedMultiplyAdd(wv, TVec.Load(x1 + i), a1);
            a2 = TVec.FusedMultiplyAdd(wv, TVec.Load(x2 + i), a2);
            a3 = TVec.FusedMultiplyAdd(wv, TVec.Load(x3 + i), a3);
        }

        var s = Vector128.Create(TVec.Sum(a0), TVec.Sum(a1), TVec.Sum(a2), TVec.Sum(a3));
        return AddTail<TRow>(s, row, x0, x1, x2, x3, i, n);
    }

    /// <summary>Columns <c>[from, n)</c> added one by one to four running sums, in order, as a single vector's scalar
    /// tail adds them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> AddTail<TRow>(Vector128<float> s, void* row, float* x0, float* x1, float* x2, float* x3,
        int from, int n) where TRow : IRowLoader
    {
        if (from == n)
            return s;
        float s0 = s.GetElement(0), s1 = s.GetElement(1), s2 = s.GetElement(2), s3 = s.GetElement(3);
        for (int i = from; i < n; i++)
        {
            float wi = TRow.Load1(row, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        return Vector128.Create(s0, s1, s2, s3);
    }
}
