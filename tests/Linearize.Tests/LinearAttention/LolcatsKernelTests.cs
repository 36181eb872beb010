using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.LinearAttention.Ops;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// The chunked LoLCATs hybrid (<see cref="HybridWindowLinear"/>) against its quadratic twin (the reference's
/// <c>hybrid_attention_quadratic</c> with full masks): outputs within 1e-5 relative RMSE and gradients of the feature
/// map weights W, the window factors γ, and q, k, v within 1e-4, for lengths around the block and window sizes, both
/// window shapes, with feature maps that are and are not the identity.
/// </summary>
[Collection("Torch")]
public sealed class LolcatsKernelTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var shape in new[] { "sw", "tk" })
        foreach (int t in new[] { 1, 7, 63, 64, 65, 200, 1000 })
            yield return new object[] { shape, t, 64 };
        foreach (var shape in new[] { "sw", "tk" })
        {
            yield return new object[] { shape, 50, 5 };   // window much smaller than the query block
            yield return new object[] { shape, 130, 48 }; // window not a divisor of the block
        }
    }

    private static LolcatsWindowShape Shape(string s) => s == "sw" ? LolcatsWindowShape.Sw : LolcatsWindowShape.Tk;

    private sealed class Inputs
    {
        public required Tensor Q, K, V, Positions, Valid;
        public required LolcatsFeatureMap MapQ, MapK;
        public required Tensor Factors;
    }

    private static Inputs Make(int t, ulong seed, int b = 2, int h = 3, int d = 16, bool perturbMaps = true)
    {
        using var gen = new torch.Generator(seed);
        var options = new LolcatsOptions { FeatureDim = 8 };
        var mapQ = new LolcatsFeatureMap(h, d, options);
        var mapK = new LolcatsFeatureMap(h, d, options);
        if (perturbMaps)
            using (no_grad())
            {
                mapQ.Mlp.Weight.PlusInPlace(randn(mapQ.Mlp.Weight.shape, generator: gen).Times(0.3));
                mapK.Mlp.Weight.PlusInPlace(randn(mapK.Mlp.Weight.shape, generator: gen).Times(0.3));
            }

        return new Inputs
        {
            Q = randn(new long[] { b, h, t, d }, generator: gen).Times(1.5).requires_grad_(),
            K = randn(new long[] { b, h, t, d }, generator: gen).Times(1.5).requires_grad_(),
            V = randn(new long[] { b, h, t, d }, generator: gen).requires_grad_(),
            Positions = TorchArithmetic.Arange(t, ScalarType.Int64).unsqueeze(0).expand(b, t).contiguous(),
            Valid = ones(b, t, dtype: ScalarType.Bool),
            MapQ = mapQ,
            MapK = mapK,
            Factors = randn(new long[] { h }, generator: gen).Minus(2).requires_grad_(),

        };
    }

    private static Tensor Chunked(Inputs x, int window, LolcatsWindowShape shape, int block = 64)
    {
        var g = x.Factors.sigmoid();
        return HybridWindowLinear.Forward(x.Q, x.K, x.V, x.MapQ.forward(x.Q), x.MapK.forward(x.K), x.Positions, x.Valid,
            g, ones_like(g), null, window, shape, block);
    }

    private static Tensor Quadratic(Inputs x, int window, LolcatsWindowShape shape)
    {
        var g = x.Factors.sigmoid();
        return HybridWindowLinearQuadratic.Forward(x.Q, x.K, x.V, x.MapQ.forward(x.Q), x.MapK.forward(x.K), x.Positions,
            x.Valid, g, ones_like(g), window, shape).Output;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ChunkedEqualsQuadratic(string shape, int t, int window)
    {
        var x = Make(t, (ulong)(t * 7 + window));
        TensorAssert.RelClose("output", Quadratic(x, window, Shape(shape)), Chunked(x, window, Shape(shape)), 1e-5);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GradientsMatchQuadratic(string shape, int t, int window)
    {
        var x = Make(t, (ulong)(t * 13 + window));
        var leaves = new[] { x.Q, x.K, x.V, x.Factors, x.MapQ.Mlp.Weight, x.MapK.Mlp.Weight };
        using var gen = new torch.Generator(5);
        var upstream = randn(new long[] { 2, 3, t, 16 }, generator: gen);

        Tensor[] Grads(Tensor y)
        {
            foreach (var l in leaves)
                l.grad?.zero_();
            (y * upstream).sum().backward();
            return leaves.Select(l => l.grad!.clone()).ToArray();
        }

        var reference = Grads(Quadratic(x, window, Shape(shape)));
        var chunked = Grads(Chunked(x, window, Shape(shape)));
        string[] names = { "dq", "dk", "dv", "dγ", "dW_q", "dW_k" };
        for (int i = 0; i < names.Length; i++)
        {
            // Without linear terms (T ≤ window) the output does not depend on γ: both dγ are rounding noise around 0.
            if (reference[i].abs().max().item<float>() < 1e-5)
                TensorAssert.Close(names[i], reference[i], chunked[i], 1e-4);
            else
                TensorAssert.RelClose(names[i], reference[i], chunked[i], 1e-4);
        }
    }

    [Theory]
    [InlineData("sw")]
    [InlineData("tk")]
    public void LeftPaddedRowsEqualTheirUnpaddedSelves(string shape)
    {
        // Row 1 is row 0's last 70 tokens behind 30 pads, positions counted over real tokens (the HF convention).
        var x = Make(100, 3, b: 1);
        var padded = new Inputs
        {
            Q = cat(new[] { zeros(1, 3, 30, 16), x.Q.narrow(2, 30, 70) }, 2),
            K = cat(new[] { zeros(1, 3, 30, 16), x.K.narrow(2, 30, 70) }, 2),
            V = cat(new[] { zeros(1, 3, 30, 16), x.V.narrow(2, 30, 70) }, 2),
            Positions = cat(new[] { zeros(1, 30, dtype: ScalarType.Int64), TorchArithmetic.Arange(70, ScalarType.Int64).unsqueeze(0) }, 1),
            Valid = cat(new[] { zeros(1, 30, dtype: ScalarType.Bool), ones(1, 70, dtype: ScalarType.Bool) }, 1),
            MapQ = x.MapQ, MapK = x.MapK, Factors = x.Factors,
        };
        var alone = new Inputs
        {
            Q = x.Q.narrow(2, 30, 70), K = x.K.narrow(2, 30, 70), V = x.V.narrow(2, 30, 70),
            Positions = TorchArithmetic.Arange(70, ScalarType.Int64).unsqueeze(0), Valid = ones(1, 70, dtype: ScalarType.Bool),
            MapQ = x.MapQ, MapK = x.MapK, Factors = x.Factors,
        };
        var expected = Quadratic(alone, 16, Shape(shape));
        TensorAssert.RelClose("padded chunked", expected, Chunked(padded, 16, Shape(shape), block: 16).narrow(2, 30, 70), 1e-5);
        TensorAssert.RelClose("padded quadratic", expected, Quadratic(padded, 16, Shape(shape)).narrow(2, 30, 70), 1e-5);
    }

    [Fact]
    public void SlidingWindowEqualsSoftmaxWhileTheSequenceFitsInTheWindow()
    {
        // docs/METHODS.md §2.4.1: for T ≤ 64 the sw layer is the teacher's softmax attention exactly (L is empty).
        var x = Make(64, 11);
        var scores = x.Q.matmul(x.K.transpose(-2, -1)).Over(4.0);
        var mask = ones(64, 64, dtype: ScalarType.Bool).tril();
        var softmax = scores.MaskedFill(mask.logical_not(), float.NegativeInfinity).softmax(-1).matmul(x.V);
        TensorAssert.RelClose("sw = softmax", softmax, Chunked(x, 64, LolcatsWindowShape.Sw), 1e-5);
    }

    [Fact]
    public void TerraceBlocksCountFromPositionZero()
    {
        // Position 64 (block 1) sees blocks 0 and 1 in softmax: with w = 64 and T = 65 nothing is linear yet, so
        // the output is plain softmax attention; position 128 (block 2) would put block 0 in the linear term.
        var x = Make(129, 17);
        var (w, l) = HybridWindowLinearQuadratic.Masks(x.Positions, x.Valid, 64, LolcatsWindowShape.Tk);
        Assert.Equal(65, w[0, 0, 64].sum().item<long>());
        Assert.Equal(0, l[0, 0, 127].sum().item<long>());
        Assert.Equal(64, l[0, 0, 128].sum().item<long>());
        Assert.Equal(65, w[0, 0, 128].sum().item<long>());
    }

    [Fact]
    public void HedgehogMapIsTheClampedSoftmaxOfBothHalfSpaces()
    {
        var map = new LolcatsFeatureMap(1, 4, new LolcatsOptions { FeatureDim = 3 });
        var x = tensor(new float[] { 1, -2, 60, 5 }).view(1, 1, 1, 4); // the identity map keeps the first 3 coordinates
        var phi = map.forward(x).view(6);
        var kept = tensor(new float[] { 1, -2, 60 });
        var expected = cat(new[] { kept.softmax(0), (-kept).softmax(0) }).ClampMin(1e-12);
        TensorAssert.Close("φ", expected, phi, 1e-7);
        Assert.Equal(1e-12, phi[5].item<float>(), 1e-18); // softmax(−x) underflows at 60: the clamp fires
    }
}
