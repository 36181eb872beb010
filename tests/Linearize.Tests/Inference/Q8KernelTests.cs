using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>The Q8 × quantized-activation kernels (<see cref="MatVecQ8"/>) against their naive twin with each int8
/// product instruction forced (<see cref="MatVecKernelTests"/> runs each ISA's choice), and the activation quantizer
/// against the weights' rule.</summary>
public sealed unsafe class Q8KernelTests
{
    /// <summary>Rows <c>[r0, r1)</c> times the first <c>count</c> quantized rows into <c>y</c> (stride = rows).</summary>
    internal delegate void Q8Rows(PackedMatrix w, Q8Activations x, int count, float* y, int yStride, int r0, int r1);

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
    }

    /// <summary>The AVX2 fallback (<c>vpmaddubsw</c> + <c>vpmaddwd</c>) forced, on a CPU that would pick VNNI.</summary>
    [IsaTheory(KernelIsa.Avx2)]
    [InlineData(KernelIsa.Avx2)]
    public void MaddProductsEqualNaiveTwin(KernelIsa isa)
    {
        Assert.Equal(KernelIsa.Avx2, isa);
        EqualsNaiveTwin((w, x, n, y, s, a, b) => MatVecQ8.Rows<MaddProducts>(w, x, n, y, s, a, b), "madd");
    }

    [VnniFact]
    public void VnniProductsEqualNaiveTwin() => EqualsNaiveTwin((w, x, n, y, s, a, b) => MatVecQ8.Rows<VnniProducts>(w, x, n, y, s, a, b), "vnni");

    /// <summary>The two product instructions sum the same exact int32s, so their results are bit-identical.</summary>
    [VnniFact]
    public void VnniAndMaddAgreeBitForBit() =>
        AgreeBitForBit((w, x, n, y, s, a, b) => MatVecQ8.Rows<VnniProducts>(w, x, n, y, s, a, b),
            (w, x, n, y, s, a, b) => MatVecQ8.Rows<MaddProducts>(w, x, n, y, s, a, b), 1030, 6);

    /// <summary><paramref name="first"/> and <paramref name="second"/> give bit-identical products of a [23, cols] Q8
    /// matrix and <paramref name="count"/> quantized vectors, rows [0, 3) and [3, 23) taken separately.</summary>
    private static void AgreeBitForBit(Q8Rows first, Q8Rows second, int cols, int count)
    {
        const int rows = 23;
        using var w = PackedMatrix.Pack(Random(rows * cols, cols, 2f), rows, cols, WeightFormat.Q8);
        var x = Random(count * cols, cols + 1, 5f);
        using var q = new Q8Activations();
        var a = new float[count * rows];
        var b = new float[count * rows];
        fixed (float* xp = x, ap = a, bp = b)
        {
            q.Quantize(xp, cols, count, cols);
            // Two row ranges, as two threads would take them: one shorter than a tile, one not a multiple of it.
            foreach (var (r0, r1) in new[] { (0, 3), (3, rows) })
            {
                first(w, q, count, ap, rows, r0, r1);
                second(w, q, count, bp, rows, r0, r1);
            }
        }

        Assert.True(a.AsSpan().SequenceEqual(b), $"cols {cols}, {count} vectors");
    }

    /// <summary>Widths whose rows end in every kind of group (Q8RowLayout: 16 blocks per group): 544, a last group of one
    /// whole block; 800, of an odd nine; 1000, fifteen whole and a partial block; 1030, a last group of only a partial
    /// block; 4096, whole groups only.</summary>
    private static readonly int[] GroupedWidths = { 544, 800, 1000, 1030, 4096 };

    /// <summary>The native 512-bit tile (4 rows × 4 vectors), rows and vectors past its last whole tile by the managed
    /// kernel: against the naive twin, and bit for bit against each vector multiplied alone (which never reaches the tile).</summary>
    [NativeQ8Fact]
    public void NativeTileEqualsNaiveTwin() =>
        EqualsNaiveTwin((w, x, n, y, s, a, b) => MatVecQ8.RowsNative<MaddProducts>(w, x, n, y, s, a, b), "native");

    /// <summary>The native tile sums in the managed kernel's lanes and order: bit-identical results on a shape with an odd
    /// last whole block, a partial block and rows and vectors that leave partial tiles.</summary>
    [NativeQ8Fact]
    public void NativeTileAndManagedKernelAgreeBitForBit()
    {
        foreach (int cols in GroupedWidths)
            AgreeBitForBit((w, x, n, y, s, a, b) => MatVecQ8.RowsNative<MaddProducts>(w, x, n, y, s, a, b),
                (w, x, n, y, s, a, b) => MatVecQ8.Rows<MaddProducts>(w, x, n, y, s, a, b), cols, 9);
    }

    /// <summary>The native 4 × 1 tile (decoding; rows a quarter of the range apart, the rows past the last whole quarter
    /// by the managed kernel) against the naive twin, and bit for bit against each batch's kernel: a batch of vectors
    /// (the 4 × 4 tile and the managed kernel) equals each of its vectors through this path alone.</summary>
    [NativeQ8Fact]
    public void NativeOneVectorTileEqualsNaiveTwin() =>
        EqualsNaiveTwin((w, x, n, y, s, a, b) =>
        {
            if (n == 1)
                MatVecQ8.OneVectorNative<MaddProducts>(w, x, y, a, b);
            else
                MatVecQ8.RowsNative<MaddProducts>(w, x, n, y, s, a, b);
        }, "native one vector");

    /// <summary>The 4 × 1 tile sums in the managed kernel's lanes and order (odd last whole block, partial block, rows
    /// past the last whole quarter).</summary>
    [NativeQ8Fact]
    public void NativeOneVectorTileAndManagedKernelAgreeBitForBit()
    {
        foreach (int cols in GroupedWidths)
            AgreeBitForBit((w, x, n, y, s, a, b) => MatVecQ8.OneVectorNative<MaddProducts>(w, x, y, a, b),
                (w, x, n, y, s, a, b) => MatVecQ8.Rows<MaddProducts>(w, x, n, y, s, a, b), cols, 1);
    }

    /// <summary>
    /// Column counts around the 32-wide block (partial last blocks, pairs of blocks and an odd one) and real ones;
    /// batches around the 4-vector tile. Every vector's result must also be bit-identical to the vector quantized and
    /// multiplied alone (the kernels are batch-invariant by construction).
    /// </summary>
    internal static void EqualsNaiveTwin(Q8Rows run, string name)
    {
        foreach (int cols in new[] { 1, 7, 16, 31, 32, 33, 64, 65, 96, 100, 172, 544, 768, 1000, 1030 })
            foreach (int count in new[] { 1, 2, 3, 4, 5, 8, 11 })
            {
                const int rows = 37;
                using var w = PackedMatrix.Pack(Random(rows * cols, cols, 3f), rows, cols, WeightFormat.Q8);
                var x = Random(count * cols, cols + 1000 * count);
                var expected = NaiveMatVec.Multiply(w, x, count);
                var y = new float[count * rows];
                var alone = new float[count * rows];
                using var q = new Q8Activations();
                using var one = new Q8Activations();
                fixed (float* xp = x, yp = y, ap = alone)
                {
                    q.Quantize(xp, cols, count, cols);
                    // Two row ranges, as two threads would take them.
                    run(w, q, count, yp, rows, 0, 20);
                    run(w, q, count, yp, rows, 20, rows);
                    for (int b = 0; b < count; b++)
                    {
                        one.Quantize(xp + b * cols, cols, 1, cols);
                        run(w, one, 1, ap + b * rows, rows, 0, rows);
                    }
                }

                Assert.True(y.AsSpan().SequenceEqual(alone), $"{name} cols {cols} batch {count}: batched ≠ alone");
                var dense = w.Dequantize();
                var xd = new float[cols];
                for (int b = 0; b < count; b++)
                {
                    q.DequantizeRow(b, xd);
                    for (int r = 0; r < rows; r++)
                    {
                        // float32 accumulation of exact block sums: error bounded by a few ulps of Σ|w·x|.
                        double magnitude = 0;
                        for (int c = 0; c < cols; c++)
                            magnitude += Math.Abs((double)dense[r * cols + c] * xd[c]);
                        double err = Math.Abs(y[b * rows + r] - expected[b * rows + r]);
                        Assert.True(err <= 1e-5 * magnitude + 1e-30,
                            $"{name} cols {cols} batch {count} row {r} vector {b}: |{y[b * rows + r]} − {expected[b * rows + r]}| = {err:E2} > 1e-5 · {magnitude:E2}");
                    }
                }
            }
    }

    /// <summary>The vectorised quantizer is bit for bit the weights' scalar rule, ties (k + ½ → away from zero), zero
    /// blocks and partial last blocks included, and pads each row to whole blocks with zeros.</summary>
    [Fact]
    public void ActivationsQuantizeExactlyAsWeightsDo()
    {
        const int cols = 77, count = 5;
        var x = Random(count * cols, 11, 4f);
        for (int c = 0; c < 32; c++)
        {
            // Row 1's first block: max 127 so d = 1 and every value is a tie or an integer.
            x[cols + c] = c == 0 ? 127f : (c % 2 == 0 ? 1 : -1) * (c + 0.5f);
            x[2 * cols + c] = 0; // row 2's first block: all zeros
        }

        using var q = new Q8Activations();
        fixed (float* xp = x)
            q.Quantize(xp, cols, count, cols);
        Assert.Equal(3, q.BlocksPerRow);
        var expectedQ = new sbyte[cols];
        for (int b = 0; b < count; b++)
            for (int k = 0; k < 3; k++)
            {
                int start = k * 32, n = Math.Min(32, cols - start);
                float d = PackedMatrix.QuantizeBlock(x.AsSpan(b * cols + start, n), expectedQ.AsSpan(start, n));
                Assert.Equal(d, q.Scales(b)[k]);
                for (int c = start; c < start + 32; c++)
                    Assert.Equal(c < cols ? expectedQ[c] : (sbyte)0, q.Quants(b)[c]);
            }

        Assert.Equal((sbyte)3, q.Quants(1)[2]);   // 2.5 → 3
        Assert.Equal((sbyte)-4, q.Quants(1)[3]);  // −3.5 → −4
    }

    /// <summary>Packing weights as Q8 (vectorized for full blocks) stores exactly the scalar rule's quants and scales,
    /// ties and zero blocks included, and the partial last block too.</summary>
    [Fact]
    public void PackedWeightsFollowTheScalarRule()
    {
        const int cols = 77, rows = 5;
        var w = Random(rows * cols, 13, 4f);
        for (int c = 0; c < 32; c++)
        {
            w[cols + c] = c == 0 ? 127f : (c % 2 == 0 ? 1 : -1) * (c + 0.5f);
            w[2 * cols + c] = 0;
        }

        using var m = PackedMatrix.Pack(w, rows, cols, WeightFormat.Q8);
        var expected = new sbyte[cols];
        var quants = new sbyte[cols];
        var scales = new float[m.BlocksPerRow];
        for (int r = 0; r < rows; r++)
        {
            m.CopyQ8Row(r, quants, scales);
            for (int k = 0; k < m.BlocksPerRow; k++)
            {
                int start = k * 32, n = Math.Min(32, cols - start);
                float d = PackedMatrix.QuantizeBlock(w.AsSpan(r * cols + start, n), expected.AsSpan(start, n));
                Assert.Equal(d, scales[k]);
                for (int c = start; c < start + n; c++)
                    Assert.Equal(expected[c], quants[c]);
            }
        }
    }
}
