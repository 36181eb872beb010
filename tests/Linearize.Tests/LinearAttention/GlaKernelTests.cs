using Linearize.LinearAttention.Ops;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// Chunked vs naive recurrent vs step-by-step GLA: outputs and final states within 1e-5 relative RMSE (float32),
/// gradients within 1e-4 (fla's <c>assert_close</c> criterion), across lengths that are and are not multiples of
/// the chunk, head sizes, and gates from mild (Liger's logsigmoid/16) to very small (≈ −20).
/// </summary>
[Collection("Torch")]
public sealed class GlaKernelTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (int t in new[] { 1, 7, 63, 64, 65, 200, 1000 })
            yield return new object[] { t, 8, 8, "liger" };
        foreach (int t in new[] { 65, 200 })
        {
            yield return new object[] { t, 16, 32, "liger" };
            yield return new object[] { t, 16, 8, "strong" };
            yield return new object[] { t, 8, 16, "tiny" };
        }
    }

    /// <summary>Random q, k, v and log gates: "liger" = logsigmoid(N(0,1))/16, "strong" = logsigmoid(N(0,4)), "tiny" = U(−20, 0).</summary>
    internal static (Tensor q, Tensor k, Tensor v, Tensor g) Inputs(int t, int dk, int dv, string gates, ulong seed, int b = 2, int h = 3)
    {
        using var gen = new torch.Generator(seed);
        var q = randn(new long[] { b, t, h, dk }, generator: gen);
        var k = randn(new long[] { b, t, h, dk }, generator: gen);
        var v = randn(new long[] { b, t, h, dv }, generator: gen);
        var raw = randn(new long[] { b, t, h, dk }, generator: gen);
        var g = gates switch
        {
            "liger" => nn.functional.logsigmoid(raw).Over(16),
            "strong" => nn.functional.logsigmoid(raw.Times(4)),
            "tiny" => rand(new long[] { b, t, h, dk }, generator: gen).Times(-20),
            _ => throw new ArgumentException(gates),
        };
        return (q, k, v, g);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ChunkedEqualsNaiveRecurrent(int t, int dk, int dv, string gates)
    {
        var (q, k, v, g) = Inputs(t, dk, dv, gates, seed: (ulong)(t * 31 + dk));
        using var gen = new torch.Generator(99);
        var h0 = randn(new long[] { 2, 3, dk, dv }, generator: gen);
        var (oRef, sRef) = GlaRecurrent.Forward(q, k, v, g, 0.5, h0);
        var (o, s) = GlaChunked.Forward(q, k, v, g, 0.5, h0);
        TensorAssert.RelClose("output", oRef, o, 1e-5);
        TensorAssert.RelClose("final state", sRef, s, 1e-5);
    }

    [Theory]
    [InlineData(65, "liger")]
    [InlineData(130, "tiny")]
    [InlineData(63, "strong")]
    public void ChunkedGradientsEqualNaive(int t, string gates)
    {
        var grads = new List<Tensor[]>();
        foreach (bool chunked in new[] { false, true })
        {
            var (q, k, v, g) = Inputs(t, 8, 8, gates, seed: 5);
            using var gen = new torch.Generator(6);
            var h0 = randn(new long[] { 2, 3, 8, 8 }, generator: gen);
            var wo = randn(new long[] { 2, t, 3, 8 }, generator: gen);
            var ws = randn(new long[] { 2, 3, 8, 8 }, generator: gen);
            foreach (var x in new[] { q, k, v, g, h0 })
                x.requires_grad_(true);
            var (o, s) = chunked ? GlaChunked.Forward(q, k, v, g, 1.0, h0) : GlaRecurrent.Forward(q, k, v, g, 1.0, h0);
            (o * wo).sum().Plus((s * ws).sum()).backward();

            grads.Add(new[] { q.grad!, k.grad!, v.grad!, g.grad!, h0.grad! });
        }

        var names = new[] { "dq", "dk", "dv", "dg", "dh0" };
        for (int i = 0; i < names.Length; i++)
            TensorAssert.RelClose(names[i], grads[0][i], grads[1][i], 1e-4);
    }

    [Fact]
    public void PrefillThenStepsEqualsOnePass()
    {
        var (q, k, v, g) = Inputs(150, 8, 8, "liger", seed: 8);
        var (oAll, sAll) = GlaChunked.Forward(q, k, v, g, 1.0);
        var (oHead, state) = GlaChunked.Forward(q.narrow(1, 0, 100), k.narrow(1, 0, 100), v.narrow(1, 0, 100), g.narrow(1, 0, 100), 1.0);
        var outs = new List<Tensor> { oHead };
        for (int i = 100; i < 150; i++)
        {
            (var o, state) = GlaRecurrent.Step(q.select(1, i), k.select(1, i), v.select(1, i), g.select(1, i), state, 1.0);
            outs.Add(o.unsqueeze(1));
        }

        TensorAssert.RelClose("prefill + steps", oAll, cat(outs, 1), 1e-5);
        TensorAssert.RelClose("state", sAll, state, 1e-5);
    }

    [Fact]
    public void VeryLongSpanStaysFinite()
    {
        // 4096 steps of strong decay: the cumulative gate reaches about −3·10⁴ inside no chunk-local exponent.
        var (q, k, v, g) = Inputs(4096, 8, 8, "tiny", seed: 12, b: 1, h: 1);
        var (o, s) = GlaChunked.Forward(q, k, v, g, 1.0);
        Assert.True(o.isfinite().all().item<bool>());
        Assert.True(s.isfinite().all().item<bool>());
    }
}
