using Linearize.LinearAttention.Ops;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>The scalar-gate and gated-slot kernels: chunked vs naive recurrent, outputs, states and gradients.</summary>
[Collection("Torch")]
public sealed class ScalarAndSlotKernelTests
{
    public static IEnumerable<object[]> Lengths() => new[] { 1, 7, 63, 64, 65, 200, 1000 }.Select(t => new object[] { t });

    private static Tensor ScalarGate(int t, string kind, torch.Generator gen, int b = 2, int h = 3) => kind switch
    {
        "liger" => nn.functional.logsigmoid(randn(new long[] { b, t, h }, generator: gen)),
        "tiny" => rand(new long[] { b, t, h }, generator: gen).Times(-20),
        _ => -nn.functional.softplus(randn(new long[] { b, t, h }, generator: gen)),
    };

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ScalarChunkedEqualsNaive(int t)
    {
        foreach (var kind in new[] { "liger", "tiny", "mamba2" })
        {
            using var gen = new torch.Generator((ulong)t);
            var q = randn(new long[] { 2, t, 3, 8 }, generator: gen);
            var k = randn(new long[] { 2, t, 3, 8 }, generator: gen);
            var v = randn(new long[] { 2, t, 3, 16 }, generator: gen);
            var g = ScalarGate(t, kind, gen);
            var h0 = randn(new long[] { 2, 3, 8, 16 }, generator: gen);
            var (oRef, sRef) = ScalarGateRecurrent.Forward(q, k, v, g, 0.7, h0);
            var (o, s) = ScalarGateChunked.Forward(q, k, v, g, 0.7, h0);
            TensorAssert.RelClose($"{kind} output", oRef, o, 1e-5);
            TensorAssert.RelClose($"{kind} state", sRef, s, 1e-5);
        }
    }

    [Fact]
    public void ScalarChunkedGradientsEqualNaive()
    {
        var grads = new List<Tensor[]>();
        foreach (bool chunked in new[] { false, true })
        {
            using var gen = new torch.Generator(3);
            var q = randn(new long[] { 1, 130, 2, 8 }, generator: gen).requires_grad_(true);
            var k = randn(new long[] { 1, 130, 2, 8 }, generator: gen).requires_grad_(true);
            var v = randn(new long[] { 1, 130, 2, 8 }, generator: gen).requires_grad_(true);
            var g = ScalarGate(130, "mamba2", gen, 1, 2).requires_grad_(true);
            var w = randn(new long[] { 1, 130, 2, 8 }, generator: gen);
            var (o, s) = chunked ? ScalarGateChunked.Forward(q, k, v, g, 1.0) : ScalarGateRecurrent.Forward(q, k, v, g, 1.0);
            (o * w).sum().Plus(s.sum()).backward();
            grads.Add(new[] { q.grad!, k.grad!, v.grad!, g.grad! });
        }

        foreach (var (name, i) in new[] { ("dq", 0), ("dk", 1), ("dv", 2), ("dg", 3) })
            TensorAssert.RelClose(name, grads[0][i], grads[1][i], 1e-4);
    }

    private static (Tensor q, Tensor k, Tensor v, Tensor s, Tensor g) SlotInputs(int t, int m, ulong seed)
    {
        using var gen = new torch.Generator(seed);
        var q = randn(new long[] { 2, t, 3, 8 }, generator: gen);
        var k = randn(new long[] { 2, t, 3, 8 }, generator: gen);
        var v = randn(new long[] { 2, t, 3, 8 }, generator: gen);
        var g = nn.functional.logsigmoid(randn(new long[] { 2, t, 3, m }, generator: gen).Times(3)).Over(4);
        var s = g.exp().OneMinus(); // Liger-GSA ties the slot write to the forget gate
        return (q, k, v, s, g);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SlotChunkedEqualsNaive(int t)
    {
        var (q, k, v, s, g) = SlotInputs(t, 4, (ulong)t);
        using var gen = new torch.Generator(1);
        var hk0 = randn(new long[] { 2, 3, 8, 4 }, generator: gen);
        var hv0 = randn(new long[] { 2, 3, 4, 8 }, generator: gen);
        var (oRef, hkRef, hvRef) = GsaRecurrent.Forward(q, k, v, s, g, 0.5, hk0, hv0);
        var (o, hk, hv) = GsaChunked.Forward(q, k, v, s, g, 0.5, hk0, hv0);
        TensorAssert.RelClose("output", oRef, o, 1e-5);
        TensorAssert.RelClose("key state", hkRef, hk, 1e-5);
        TensorAssert.RelClose("value state", hvRef, hv, 1e-5);
    }

    [Fact]
    public void SlotChunkedGradientsEqualNaive()
    {
        var grads = new List<Tensor[]>();
        foreach (bool chunked in new[] { false, true })
        {
            var (q, k, v, s, g) = SlotInputs(97, 4, 2);
            foreach (var x in new[] { q, k, v, g })
                x.requires_grad_(true);
            var sTied = g.exp().OneMinus();

            using var gen = new torch.Generator(5);
            var w = randn(new long[] { 2, 97, 3, 8 }, generator: gen);
            var (o, hk, hv) = chunked ? GsaChunked.Forward(q, k, v, sTied, g, 1.0) : GsaRecurrent.Forward(q, k, v, sTied, g, 1.0);
            (o * w).sum().Plus(hk.sum()).Plus(hv.sum()).backward();
            grads.Add(new[] { q.grad!, k.grad!, v.grad!, g.grad! });
        }

        foreach (var (name, i) in new[] { ("dq", 0), ("dk", 1), ("dv", 2), ("dg", 3) })
            TensorAssert.RelClose(name, grads[0][i], grads[1][i], 1e-4);
    }
}
