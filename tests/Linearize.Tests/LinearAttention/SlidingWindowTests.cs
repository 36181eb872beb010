using Linearize.Caching;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>The banded window op against a dense masked reference, and its ring-buffer cache against one pass.</summary>
[Collection("Torch")]
public sealed class SlidingWindowTests
{
    private static (Tensor q, Tensor k, Tensor v) Inputs(int t, ulong seed)
    {
        using var g = new torch.Generator(seed);
        return (randn(new long[] { 2, 4, t, 8 }, generator: g), randn(new long[] { 2, 2, t, 8 }, generator: g),
            randn(new long[] { 2, 2, t, 8 }, generator: g));
    }

    private static Tensor Positions(int t) => TorchArithmetic.Arange(t, ScalarType.Int64).unsqueeze(0).expand(2, t);

    /// <summary>Dense reference: a T×T mask (window, sinks, causality), plain softmax.</summary>
    private static Tensor Dense(Tensor q, Tensor k, Tensor v, int window, int sinks)
    {
        long t = q.shape[2];
        var i = TorchArithmetic.Arange(t, ScalarType.Int64).unsqueeze(1);
        var j = TorchArithmetic.Arange(t, ScalarType.Int64).unsqueeze(0);
        var visible = (j <= i).logical_and((j > i.Minus(window)).logical_or(j.Lt(sinks)));
        var kk = k.repeat_interleave(2, dim: 1);
        var vv = v.repeat_interleave(2, dim: 1);
        var scores = q.matmul(kk.transpose(-2, -1)).Over(Math.Sqrt(q.shape[3]));
        return scores.MaskedFill(visible.logical_not(), float.NegativeInfinity).softmax(-1).matmul(vv);

    }

    [Theory]
    [InlineData(1, 64, 0)]
    [InlineData(7, 5, 0)]
    [InlineData(63, 64, 0)]
    [InlineData(64, 64, 0)]
    [InlineData(65, 64, 0)]
    [InlineData(200, 65, 0)]
    [InlineData(200, 1, 0)]
    [InlineData(200, 16, 4)]
    [InlineData(130, 64, 2)]
    public void BandedEqualsDense(int t, int window, int sinks)
    {
        var (q, k, v) = Inputs(t, (ulong)(t + window));
        var banded = SlidingWindowSoftmax.Forward(q, k, v, Positions(t), null, window, sinks, blockSize: 16);
        TensorAssert.RelClose("window", Dense(q, k, v, window, sinks), banded, 1e-5);
    }

    [Fact]
    public void EqualsTeacherAttentionWhenTheWindowCoversTheSequence()
    {
        var (q, k, v) = Inputs(64, 3);
        var teacher = LlamaAttention.Attend(q, k, v, 0, null, null);
        var window = SlidingWindowSoftmax.Forward(q, k, v, Positions(64), null, 64, 0);
        TensorAssert.Close("T ≤ window", teacher, window, 1e-6);
    }

    [Theory]
    [InlineData(16, 0)]
    [InlineData(16, 3)]
    [InlineData(1, 0)]
    public void RingBufferDecodingEqualsOnePass(int window, int sinks)
    {
        const int t = 90;
        var (q, k, v) = Inputs(t, 9);
        var full = SlidingWindowSoftmax.Forward(q, k, v, Positions(t), null, window, sinks);
        using var cache = new WindowKvCache(window - 1, sinks);
        var parts = new List<Tensor>();
        void Run(int from, int n)
        {
            var pos = Positions(t).narrow(1, from, n);
            var (qs, ks, vs) = (q.narrow(2, from, n), k.narrow(2, from, n), v.narrow(2, from, n));
            parts.Add(SlidingWindowSoftmax.Forward(qs, ks, vs, pos, null, window, sinks, cache.Context()));
            cache.Append(ks, vs, pos, ones(2, n, dtype: ScalarType.Bool));
        }

        Run(0, 37); // prefill longer than the window
        for (int i = 37; i < t; i++)
            Run(i, 1);
        TensorAssert.RelClose("ring buffer", full, cat(parts, 2), 1e-5);
        long bytes = cache.StateBytes;
        Run(t - 1, 1); // one more step does not grow the cache
        Assert.Equal(bytes, cache.StateBytes);
    }
}
