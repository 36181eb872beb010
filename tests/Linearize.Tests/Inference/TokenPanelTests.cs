using Linearize.Inference;
using Linearize.Inference.Kernels;

namespace Linearize.Tests.Inference;

/// <summary>
/// AVX-512 prefill's transposed activations (<see cref="TokenPanels"/>) and its broadcast-form tile: the panels hold
/// exactly the rows given, with zero padding, however the rows are split between fills; and a token's product does not
/// depend on how many tokens share its panel or which lane it lands in (the property that lets a prompt be prefilled in
/// any blocks with bit-identical results).
/// </summary>
public sealed class TokenPanelTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 9)]
    [InlineData(8, 8)]
    [InlineData(17, 33)]
    [InlineData(48, 16)]
    [InlineData(49, 7)]
    [InlineData(100, 70)]
    public unsafe void PanelsHoldTheRowsTransposedWithZeroPadding(int count, int cols)
    {
        const int stride = 75; // wider than any row: the fill must honour the stride
        var rng = new Random(count * 1000 + cols);
        var x = Enumerable.Range(0, count * stride).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        using var whole = new TokenPanels();
        using var split = new TokenPanels();
        fixed (float* xp = x)
        {
            whole.Fill(xp, stride, count, cols);
            // The engine's split (whole panels per thread), then an arbitrary one: same contents.
            split.Prepare(count, cols);
            for (int t = 0; t < count; t += TokenPanels.PanelTokens)
                split.FillRows(xp, stride, t, Math.Min(count, t + TokenPanels.PanelTokens));
            AssertSame(whole, split);
            split.Prepare(count, cols);
            for (int t = 0, step = 3; t < count; t += step, step += 5)
                split.FillRows(xp, stride, t, Math.Min(count, t + step));
            AssertSame(whole, split);
        }

        for (int t = 0; t < count; t++)
            for (int c = 0; c < cols; c++)
                Assert.Equal(x[t * stride + c], whole.Get(t, c));
        for (int p = 0; p < whole.Panels; p++)
        {
            int width = whole.Width(p), first = p * TokenPanels.PanelTokens;
            Assert.True(width % 16 == 0 && width <= TokenPanels.PanelTokens && width >= Math.Min(TokenPanels.PanelTokens, count - first));
            for (int c = 0; c < cols; c++)
                for (int j = count - first; j < width; j++)
                    Assert.Equal(0f, whole.Panel(p)[(long)c * width + j]);
        }
    }

    private static unsafe void AssertSame(TokenPanels a, TokenPanels b)
    {
        for (int p = 0; p < a.Panels; p++)
        {
            long n = (long)a.Width(p) * a.Cols;
            Assert.True(new ReadOnlySpan<float>(a.Panel(p), (int)n).SequenceEqual(new ReadOnlySpan<float>(b.Panel(p), (int)n)), $"panel {p}");
        }
    }

    /// <summary>Each token alone and all of them together, in panels of 48, 32 and 16 lanes: bit for bit the same
    /// rows, for float32 and widened bfloat16 weights and row counts that leave short groups of 8.</summary>
    [Theory]
    [InlineData(WeightFormat.Float32, 21, 67)]
    [InlineData(WeightFormat.BFloat16, 37, 130)]
    public unsafe void ATokensProductDoesNotDependOnItsPanel(WeightFormat format, int rows, int cols)
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512))
            return; // the panelled product is the AVX-512 path; the AVX2 tile is checked against the naive twin
        const int count = 83; // one panel of 48, one of 32 lanes (35 tokens); alone, each token is a 16-lane panel
        var rng = new Random(rows + cols);
        var weights = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var x = Enumerable.Range(0, count * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        using var w = PackedMatrix.Pack(weights, rows, cols, format);
        var together = new float[count * rows];
        var alone = new float[rows];
        fixed (float* xp = x, yp = together, ap = alone)
        {
            MatMat.Rows(w, xp, cols, count, yp, rows, 0, rows, KernelIsa.Avx512);
            for (int t = 0; t < count; t++)
            {
                MatMat.Rows(w, xp + t * cols, cols, 1, ap, rows, 0, rows, KernelIsa.Avx512);
                Assert.True(alone.AsSpan().SequenceEqual(together.AsSpan(t * rows, rows)), $"token {t}");
            }
        }
    }
}
