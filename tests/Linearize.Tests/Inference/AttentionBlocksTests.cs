using Linearize.Inference.Mixers;

namespace Linearize.Tests.Inference;

/// <summary>The softmax prefill's block kernels against plain loops (their naive twins); the AVX2 pass of CI runs them
/// again on the 256-bit paths.</summary>
public sealed unsafe class AttentionBlocksTests
{
    private const int K = AttentionBlocks.KeyBlock;

    private static float[] Random(Random r, int n) => Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();

    [Theory]
    [InlineData(16)]
    [InlineData(64)]
    [InlineData(128)]
    public void BlockScoresAreEachRowsDotWithEachKey(int d)
    {
        var r = new Random(d);
        var q = Enumerable.Range(0, 4).Select(_ => Random(r, d)).ToArray();
        var keysT = Random(r, d * K); // [D, KeyBlock]
        var s = Enumerable.Range(0, 4).Select(_ => new float[K]).ToArray();
        fixed (float* q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3], kt = keysT, s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3])
            AttentionBlocks.BlockScores4(q0, q1, q2, q3, kt, d, s0, s1, s2, s3);
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < K; k++)
            {
                float expected = 0; // the kernel's chain: one FMA per head dim, in order
                for (int c = 0; c < d; c++)
                    expected = MathF.FusedMultiplyAdd(q[i][c], keysT[c * K + k], expected);
                Assert.Equal(expected, s[i][k]);
            }
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(37, 64)]
    [InlineData(64, 128)]
    public void FourRowsOfWeightedValuesAreEachRowAlone(int n, int d)
    {
        var r = new Random(n * d);
        var p = Enumerable.Range(0, 4).Select(_ => Random(r, n)).ToArray();
        var values = Random(r, n * d); // [n, D]
        var start = Enumerable.Range(0, 4).Select(_ => Random(r, d)).ToArray();
        var together = start.Select(a => (float[])a.Clone()).ToArray();
        var alone = start.Select(a => (float[])a.Clone()).ToArray();
        fixed (float* p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3], v = values, a0 = together[0], a1 = together[1], a2 = together[2], a3 = together[3])
            AttentionBlocks.WeightedValues4(p0, p1, p2, p3, v, n, d, a0, a1, a2, a3);
        for (int i = 0; i < 4; i++)
        {
            fixed (float* pi = p[i], v = values, ai = alone[i])
                AttentionBlocks.WeightedValues(pi, v, n, d, ai);
            Assert.Equal(alone[i], together[i]); // bit for bit: the same chain per column
            for (int c = 0; c < d; c++)
            {
                double expected = start[i][c];
                for (int k = 0; k < n; k++)
                    expected += (double)p[i][k] * values[k * d + c];
                Assert.Equal(expected, together[i][c], 1e-4);
            }
        }
    }

    [Fact]
    public void BlockByBlockOnlineSoftmaxIsTheSoftmaxOfAllScores()
    {
        const int d = 16, blocks = 3;
        var r = new Random(7);
        var scores = Random(r, blocks * K).Select(x => 8 * x).ToArray(); // wide enough that the running max moves
        var values = Random(r, blocks * K * d);
        var state = new float[2 + d];
        state[0] = float.NegativeInfinity;
        fixed (float* st = state, v = values)
            for (int b = 0; b < blocks; b++)
            {
                var block = scores.AsSpan(b * K, K).ToArray();
                fixed (float* sc = block)
                {
                    AttentionBlocks.Accumulate(st, sc, K, d);
                    AttentionBlocks.WeightedValues(sc, v + (long)b * K * d, K, d, st + 2);
                }
            }

        double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
        Assert.Equal(max, state[0]);
        Assert.Equal(sum, state[1], sum * 1e-5);
        for (int c = 0; c < d; c++)
        {
            double expected = 0;
            for (int k = 0; k < scores.Length; k++)
                expected += Math.Exp(scores[k] - max) / sum * values[k * d + c];
            Assert.Equal(expected, state[2 + c] / state[1], 1e-5);
        }
    }
}
