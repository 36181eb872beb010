using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>Every fast matrix kernel (format × ISA × batch 1–11) against its naive twin, and the packing formats' rounding.</summary>
public sealed unsafe class MatVecKernelTests
{
    public static IEnumerable<object[]> Formats() => Enum.GetValues<WeightFormat>().Select(f => new object[] { f });

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
    }

    // One theory per ISA so a level this CPU lacks is reported as skipped, not passed.
    [IsaTheory(KernelIsa.Avx512)]
    [MemberData(nameof(Formats))]
    public void Avx512KernelsEqualNaiveTwin(WeightFormat format) => FastKernelEqualsNaiveTwin(format, KernelIsa.Avx512);

    [IsaTheory(KernelIsa.Avx2)]
    [MemberData(nameof(Formats))]
    public void Avx2KernelsEqualNaiveTwin(WeightFormat format) => FastKernelEqualsNaiveTwin(format, KernelIsa.Avx2);

    [IsaTheory(KernelIsa.Scalar)]
    [MemberData(nameof(Formats))]
    public void ScalarKernelsEqualNaiveTwin(WeightFormat format) => FastKernelEqualsNaiveTwin(format, KernelIsa.Scalar);

    private static void FastKernelEqualsNaiveTwin(WeightFormat format, KernelIsa isa)
    {
        if (format == WeightFormat.Q8)
        {
            // Q8 weights multiply activations quantized to Q8 blocks: their own kernel and naive twin.
            Q8KernelTests.EqualsNaiveTwin((w, x, n, y, s, a, b) => MatVecQ8.Rows(w, x, n, y, s, a, b, isa), $"q8/{isa}");
            return;
        }

        // Column counts around every vector width and Q8 block (8, 16, 32, 64: full blocks of four vectors, single
        // vectors, scalar tails, pairs of Q8 blocks and an odd one), and real ones (172 = stories260K's MLP).
        foreach (int cols in new[] { 1, 7, 16, 31, 33, 48, 64, 65, 96, 100, 172, 768, 1030 })
            foreach (int count in new[] { 1, 2, 3, 4, 5, 8, 11 })
            {
                const int rows = 37;
                var weights = Random(rows * cols, cols);
                var x = Random(count * cols, cols + 1000 * count);
                using var w = PackedMatrix.Pack(weights, rows, cols, format);
                var expected = NaiveMatVec.Multiply(w, x, count);
                var y = new float[count * rows];
                var invariant = new float[count * rows];
                var alone = new float[count * rows];
                fixed (float* xp = x, yp = y, ip = invariant, ap = alone)
                {
                    // Two row ranges, as two threads would take them.
                    MatVec.Rows(w, xp, cols, count, yp, rows, 0, 20, isa);
                    MatVec.Rows(w, xp, cols, count, yp, rows, 20, rows, isa);
                    // Batch-invariant: bit-identical to each vector multiplied alone.
                    MatVec.Rows(w, xp, cols, count, ip, rows, 0, rows, isa, batchInvariant: true);
                    for (int b = 0; b < count; b++)
                    {
                        var one = new float[rows];
                        fixed (float* op = one)
                            MatVec.Rows(w, xp + b * cols, cols, 1, op, rows, 0, rows, isa);
                        for (int r = 0; r < rows; r++)
                            ap[b * rows + r] = one[r];
                    }
                }

                Assert.True(invariant.AsSpan().SequenceEqual(alone), $"{format}/{isa} cols {cols} batch {count}: batch-invariant ≠ alone");

                var dense = w.Dequantize();
                for (int b = 0; b < count; b++)
                    for (int r = 0; r < rows; r++)
                    {
                        // float32 accumulation: error bounded by a few ulps of Σ|w·x|.
                        double magnitude = 0;
                        for (int c = 0; c < cols; c++)
                            magnitude += Math.Abs(dense[r * cols + c] * x[b * cols + c]);
                        double err = Math.Abs(y[b * rows + r] - expected[b * rows + r]);
                        Assert.True(err <= 1e-5 * magnitude + 1e-30,
                            $"{format}/{isa} cols {cols} batch {count} row {r} vector {b}: |{y[b * rows + r]} − {expected[b * rows + r]}| = {err:E2} > 1e-5 · {magnitude:E2}");
                    }
            }
    }

    [Fact]
    public void ThisMachineRunsItsBestIsa() =>
        Assert.True(KernelIsaSupport.IsSupported(KernelIsaSupport.Best), $"best = {KernelIsaSupport.Name(KernelIsaSupport.Best)}");

    [Fact]
    public void BFloat16RoundsToNearestEvenLikeTorch()
    {
        var values = Random(4096, 5, 100f).Concat(new[] { 0f, -0f, 1f, float.MaxValue, 1.00390625f, 1.01171875f, float.Epsilon }).ToArray();
        using var t = TorchSharp.torch.tensor(values).to(TorchSharp.torch.ScalarType.BFloat16).to(TorchSharp.torch.ScalarType.Float32);
        var torchRounded = t.data<float>().ToArray();
        for (int i = 0; i < values.Length; i++)
            Assert.Equal(torchRounded[i], PackedMatrix.FromBFloat16(PackedMatrix.ToBFloat16(values[i])));
    }

    [Fact]
    public void Q8BlocksKeepEveryWeightWithinHalfAStep()
    {
        const int rows = 5, cols = 77; // two full blocks and a partial one per row
        var weights = Random(rows * cols, 9, 3f);
        weights[40] = 0; // a block holding zeros and an all-zero row
        for (int c = 0; c < cols; c++)
            weights[4 * cols + c] = 0;
        using var w = PackedMatrix.Pack(weights, rows, cols, WeightFormat.Q8);
        var back = w.Dequantize();
        for (int r = 0; r < rows; r++)
            for (int blk = 0; blk * 32 < cols; blk++)
            {
                int from = blk * 32, to = Math.Min(cols, from + 32);
                float amax = 0;
                for (int c = from; c < to; c++)
                    amax = Math.Max(amax, Math.Abs(weights[r * cols + c]));
                float step = amax / 127;
                for (int c = from; c < to; c++)
                    Assert.True(Math.Abs(back[r * cols + c] - weights[r * cols + c]) <= step / 2 * 1.0001 + 1e-12,
                        $"row {r} col {c}: {weights[r * cols + c]} → {back[r * cols + c]} (step {step})");
            }

        Assert.All(back.Skip(4 * cols), v => Assert.Equal(0f, v));
        Assert.Equal(rows * cols + rows * 3 * 4, w.Bytes);
    }
}
