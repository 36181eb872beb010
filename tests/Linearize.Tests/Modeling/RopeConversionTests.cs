using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Modeling;

[Collection("Torch")]
public sealed class RopeConversionTests
{
    /// <summary>
    /// llama2.c rotates interleaved pairs (2i, 2i+1) of <c>x W</c>; after permuting W's rows, HF's rotate_half on
    /// pairs (i, i+d/2) must give the same vector, permuted the same way.
    /// </summary>
    [Fact]
    public void PermutedRowsWithRotateHalfEqualInterleavedRope()
    {
        const int heads = 2, d = 8, c = 6, pos = 5;
        using var g = new torch.Generator(2);
        var w = torch.randn(new long[] { heads * d, c }, generator: g);
        var x = torch.randn(new long[] { c }, generator: g);
        using var rope = new RotaryEmbedding(d, 10000, RopeScaling.None);

        // llama2.c run.c: for i in 0, 2, 4..: freq = 1/10000^((i % head_size)/head_size); rotate (v[i], v[i+1]).
        var q = w.matmul(x).data<float>().ToArray();
        for (int i = 0; i < heads * d; i += 2)
        {
            float freq = 1.0f / MathF.Pow(10000f, (i % d) / (float)d);
            float val = pos * freq, fcr = MathF.Cos(val), fci = MathF.Sin(val);
            float v0 = q[i], v1 = q[i + 1];
            q[i] = v0 * fcr - v1 * fci;
            q[i + 1] = v0 * fci + v1 * fcr;
        }

        var hfW = Llama2cCheckpoint.InterleavedToRotateHalf(w, heads);
        var hf = hfW.matmul(x).view(1, heads, 1, d);
        var (cos, sin) = rope.Get(torch.tensor(new long[] { pos }).view(1, 1), ScalarType.Float32);
        var rotated = RotaryEmbedding.Apply(hf, cos, sin).reshape(-1);
        var expected = Llama2cCheckpoint.InterleavedToRotateHalf(torch.tensor(q).view(-1, 1), heads).view(-1);
        TensorAssert.Close("rope", expected, rotated, 1e-5);
    }

    [Fact]
    public void Llama3ScalingMatchesTransformersFormula()
    {
        var scaling = new RopeScaling(RopeScalingType.Llama3, 8, 1, 4, 16);
        using var rope = new RotaryEmbedding(16, 500000, scaling);
        var inv = rope.InverseFrequencies.data<float>().ToArray();
        for (int i = 0; i < 8; i++)
        {
            double f = 1.0 / Math.Pow(500000, 2.0 * i / 16);
            double wavelen = 2 * Math.PI / f;
            double expected = wavelen < 16 / 4.0 ? f
                : wavelen > 16 / 1.0 ? f / 8
                : (1 - (16 / wavelen - 1) / 3) * f / 8 + (16 / wavelen - 1) / 3 * f;
            Assert.Equal(expected, inv[i], 1e-6 * Math.Max(1, expected));
        }
    }
}
