using Linearize.Inference.Kernels;

namespace Linearize.Tests.Inference;

/// <summary>
/// The four-at-a-time forms that decoding's attention uses over cached keys and values: <see cref="VectorOps.Dot4"/>
/// against four <see cref="VectorOps.Dot"/>s and <see cref="VectorOps.Axpy4"/> against four <see cref="VectorOps.Axpy"/>s
/// in order, bit for bit, on lengths that are no multiple of either vector width; and <see cref="VectorOps.Dot"/>
/// against a double-precision dot product, so twin and kernel cannot be wrong together.
/// </summary>
public sealed unsafe class VectorOpsTests
{
    private static readonly int[] Lengths = { 1, 7, 8, 9, 15, 16, 17, 33, 64, 100, 128, 257 };

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-8, 9)))).ToArray();
    }

    private static int Bits(float x) => BitConverter.SingleToInt32Bits(x);

    [Fact]
    public void Dot4EqualsFourDotsBitForBit()
    {
        foreach (int n in Lengths)
        {
            var a = Random(n, n);
            var b = Random(4 * n, n + 1000);
            var result = new float[4];
            fixed (float* ap = a, bp = b, rp = result)
            {
                VectorOps.Dot4(ap, bp, bp + n, bp + 2 * n, bp + 3 * n, n, rp);
                for (int k = 0; k < 4; k++)
                {
                    float expected = VectorOps.Dot(ap, bp + k * n, n);
                    Assert.True(Bits(expected) == Bits(result[k]), $"n {n} vector {k}: {result[k]:R} ≠ Dot {expected:R}");
                    double exact = 0, magnitude = 0;
                    for (int i = 0; i < n; i++)
                    {
                        exact += (double)a[i] * b[k * n + i];
                        magnitude += Math.Abs((double)a[i] * b[k * n + i]);
                    }

                    Assert.True(Math.Abs(expected - exact) <= 1e-6 * magnitude, $"n {n} vector {k}: Dot {expected:R} against exact {exact:R}");
                }
            }
        }
    }

    [Fact]
    public void Axpy4EqualsFourAxpysInOrderBitForBit()
    {
        foreach (int n in Lengths)
        {
            var coefficients = Random(4, n);
            var x = Random(4 * n, n + 2000);
            var y0 = Random(n, n + 3000);
            var fused = (float[])y0.Clone();
            var sequential = (float[])y0.Clone();
            fixed (float* cp = coefficients, xp = x, fp = fused, sp = sequential)
            {
                VectorOps.Axpy4(cp, xp, xp + n, xp + 2 * n, xp + 3 * n, fp, n);
                for (int k = 0; k < 4; k++)
                    VectorOps.Axpy(cp[k], xp + k * n, sp, n);
            }

            for (int i = 0; i < n; i++)
                Assert.True(Bits(sequential[i]) == Bits(fused[i]), $"n {n} element {i}: {fused[i]:R} ≠ four Axpy {sequential[i]:R}");
            for (int i = 0; i < n; i++)
            {
                double exact = y0[i];
                for (int k = 0; k < 4; k++)
                    exact += (double)coefficients[k] * x[k * n + i];
                Assert.True(Math.Abs(fused[i] - exact) <= 1e-5 * (Math.Abs(exact) + 1), $"n {n} element {i}: {fused[i]:R} against exact {exact:R}");
            }
        }
    }
}
