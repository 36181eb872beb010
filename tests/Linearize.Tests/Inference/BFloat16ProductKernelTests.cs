using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>
/// The bfloat16 × bfloat16 product (<see cref="MatMulBFloat16"/>): the native <c>vdpbf16ps</c> tiles and the managed
/// FMA emulation against the naive twin <see cref="BFloat16Dot.Scalar"/> bit for bit — on column counts that are no
/// multiple of the 32-column block, token counts around the 6-token tile, and row counts that are no multiple of the
/// 4-row tile or the 16-row block — the twin against a double-precision dot product of the same bfloat16 values, and
/// the activation rounding against the weights' rule.
/// </summary>
public sealed unsafe class BFloat16ProductKernelTests
{
    /// <summary>Around the 32-column block, a real width, and rows past <see cref="MatMulBFloat16.NextGroupPrefetchMaxBytes"/>
    /// (decoding prefetches each row's stream there instead of the next group).</summary>
    private static readonly int[] ColumnCounts = { 1, 2, 31, 32, 33, 64, 100, 768 + 17, MatMulBFloat16.NextGroupPrefetchMaxBytes / 8 + 17 };

    /// <summary>Values spread over 2^±6 around <paramref name="scale"/>, signs mixed: the sums cancel and round in
    /// many places, so any change of order shows in the last bits.</summary>
    private static float[] Random(int n, int seed, float scale)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale * Math.Pow(2, rng.Next(-6, 7)))).ToArray();
    }

    /// <summary>Runs the kernel (native or managed) on every column count and 1 to 17 tokens over 37 rows, in two row
    /// ranges as two threads would take them, and requires each result to be the twin's bits — the twin per (row,
    /// token) alone, so this is batch invariance too.</summary>
    private static void EqualsScalarTwin(bool native)
    {
        const int rows = 37;
        foreach (int cols in ColumnCounts)
        {
            using var w = PackedMatrix.Pack(Random(rows * cols, cols, 0.05f), rows, cols, WeightFormat.BFloat16);
            for (int count = 1; count <= 17; count++)
            {
                var x = Random(count * cols, cols * 100 + count, 1f);
                using var rounded = new BFloat16Activations();
                var y = new float[count * rows];
                fixed (float* xp = x, yp = y)
                {
                    rounded.Round(xp, cols, count, cols);
                    MatMulBFloat16.Rows(w, rounded, count, yp, rows, 0, 21, native);
                    MatMulBFloat16.Rows(w, rounded, count, yp, rows, 21, rows, native);
                }

                for (int r = 0; r < rows; r++)
                {
                    var row = new ReadOnlySpan<ushort>(w.Bf16 + (long)r * cols, cols);
                    for (int t = 0; t < count; t++)
                    {
                        float expected = BFloat16Dot.Scalar(row, rounded.RowBits(t));
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[t * rows + r]),
                            $"{(native ? "native" : "managed")} cols {cols} tokens {count} row {r} token {t}: {y[t * rows + r]:R} ≠ twin {expected:R}");
                    }
                }
            }
        }
    }

    [NativeBFloat16Fact]
    public void NativeTilesEqualTheScalarTwinBitForBit() => EqualsScalarTwin(native: true);

    [Fact]
    public void ManagedEmulationEqualsTheScalarTwinBitForBit() => EqualsScalarTwin(native: false);

    /// <summary>The twin is a dot product: within float32 summation error of the exact (double) sum of the bfloat16
    /// values' products — what rules out a twin and kernel wrong together (a skipped tail, a lost lane).</summary>
    [Fact]
    public void TheTwinIsTheDotProductOfTheRoundedValues()
    {
        foreach (int cols in ColumnCounts)
        {
            var w = Random(cols, cols, 0.05f).Select(PackedMatrix.ToBFloat16).ToArray();
            var x = Random(cols, cols + 1, 1f).Select(PackedMatrix.ToBFloat16).ToArray();
            double exact = 0, magnitude = 0;
            for (int c = 0; c < cols; c++)
            {
                double p = (double)PackedMatrix.FromBFloat16(w[c]) * PackedMatrix.FromBFloat16(x[c]);
                exact += p;
                magnitude += Math.Abs(p);
            }

            float twin = BFloat16Dot.Scalar(w, x);
            Assert.True(Math.Abs(twin - exact) <= 1e-6 * magnitude, $"cols {cols}: twin {twin:R}, exact {exact:R} (Σ|p| {magnitude:E2})");
        }
    }

    /// <summary>
    /// Which product a lane adds first is visible: with lane 0 at 1 after the first block, the second block's odd
    /// product −1 then even product 2^-24 leave 2^-24, while even-first would leave (1 + 2^-24) − 1 = 0 (the tie rounds
    /// to 1). The native instruction (odd first, as the Intel SDM states; measured so on Zen 4) and the twin agree.
    /// </summary>
    [NativeBFloat16Fact]
    public void OddProductsAreAddedBeforeEvenOnes()
    {
        const int cols = 64;
        var w = new float[4 * cols];
        var x = new float[cols];
        w[1] = 1; x[1] = 1;              // block 0, lane 0, odd: 1
        w[33] = -1; x[33] = 1;           // block 1, lane 0, odd: −1
        w[32] = 1f / 4096; x[32] = 1f / 4096; // block 1, lane 0, even: 2^-24
        using var m = PackedMatrix.Pack(w, 4, cols, WeightFormat.BFloat16);
        using var rounded = new BFloat16Activations();
        var y = new float[4];
        fixed (float* xp = x, yp = y)
        {
            rounded.Round(xp, cols, 1, cols);
            MatMulBFloat16.Rows(m, rounded, 1, yp, 4, 0, 4, native: true);
        }

        Assert.Equal(MathF.Pow(2, -24), y[0]);
        Assert.Equal(MathF.Pow(2, -24), BFloat16Dot.Scalar(new ReadOnlySpan<ushort>(m.Bf16, cols), rounded.RowBits(0)));
    }

    /// <summary>Activations round exactly as weights do (<see cref="PackedMatrix.ToBFloat16"/>: nearest, ties to even,
    /// NaN quiet), in the vector part of a row and its scalar tail, and rows are padded with zeros to whole blocks.</summary>
    [Fact]
    public void ActivationsRoundAsWeightsDo()
    {
        const int cols = 77, count = 3;
        var x = Random(count * cols, 5, 3f);
        float[] special =
        {
            1 + MathF.Pow(2, -8), 1 + 3 * MathF.Pow(2, -8), -(1 + MathF.Pow(2, -8)), float.NaN, float.PositiveInfinity,
            float.NegativeInfinity, -0f, float.MaxValue, float.Epsilon, -1e-40f, 65504.5f, 3.0000002f,
        };
        for (int i = 0; i < special.Length; i++)
        {
            x[cols + i] = special[i];          // vector part of row 1
            x[cols + 64 + i] = special[i];     // its scalar tail (columns 64–75)
        }

        using var rounded = new BFloat16Activations();
        fixed (float* xp = x)
            rounded.Round(xp, cols, count, cols);
        Assert.Equal(96, rounded.Stride);
        for (int t = 0; t < count; t++)
        {
            for (int c = 0; c < cols; c++)
                Assert.True(PackedMatrix.ToBFloat16(x[t * cols + c]) == rounded.RowBits(t)[c], $"row {t} column {c}: {x[t * cols + c]:R}");
            for (int c = cols; c < rounded.Stride; c++)
                Assert.Equal(0, rounded.Row(t)[c]);
        }

        Assert.Equal(0x3F80, rounded.RowBits(1)[0]);  // 1 + 2^-8: a tie, to even (1)
        Assert.Equal(0x3F82, rounded.RowBits(1)[1]);  // 1 + 3·2^-8: a tie, to even (1 + 2^-6)
    }
}
