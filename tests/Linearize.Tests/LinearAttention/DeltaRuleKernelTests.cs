using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// The delta-rule kernels: the chunked WY / UT-transform form (<see cref="DeltaRuleChunked"/>) against the naive
/// recurrence (<see cref="DeltaRuleRecurrent"/>) — outputs and final states within 1e-5 relative RMSE, gradients of
/// q, k, v, log α, β and the initial state within 1e-4 (fla's <c>assert_close</c> criterion) — for lengths around the
/// chunk, β in (0, 1) and in (0, 2) (negative eigenvalues), without a gate (DeltaNet), with log α = 0 through the gated
/// path, and with Gated DeltaNet gates from mild to very strong. Keys are L2-normalized per head, as the layers do.
/// </summary>
[Collection("Torch")]
public sealed class DeltaRuleKernelTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (int t in new[] { 1, 7, 63, 64, 65, 200, 1000 })
        foreach (double betaMax in new[] { 1.0, 2.0 })
        foreach (var gate in new[] { "none", "zero", "mild", "strong" })
            yield return new object[] { t, betaMax, gate };
    }

    /// <summary>
    /// Random inputs <c>[B, T, H, D]</c>: keys L2-normalized per head, β = betaMax·σ(N(0,1)) ∈ (0, betaMax), and log α
    /// per head: "none" = no gate (null), "zero" = 0 (α = 1 through the gated path), "mild" = logsigmoid(N(0,1) + 3)
    /// (α ≈ 0.95, Gated DeltaNet's regime), "strong" = U(−20, 0).
    /// </summary>
    internal static (Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? logAlpha, Tensor h0) Inputs(int t, double betaMax,
        string gate, ulong seed, int b = 2, int h = 3, int dk = 16, int dv = 16)
    {
        using var gen = new torch.Generator(seed);
        var q = randn(new long[] { b, t, h, dk }, generator: gen);
        var k = L2Normalize(randn(new long[] { b, t, h, dk }, generator: gen));
        var v = randn(new long[] { b, t, h, dv }, generator: gen);
        var beta = randn(new long[] { b, t, h }, generator: gen).sigmoid().Times(betaMax);
        var raw = randn(new long[] { b, t, h }, generator: gen);
        Tensor? logAlpha = gate switch
        {
            "none" => null,
            "zero" => zeros(b, t, h),
            "mild" => nn.functional.logsigmoid(raw.Plus(3)),
            "strong" => rand(new long[] { b, t, h }, generator: gen).Times(-20),
            _ => throw new ArgumentException(gate),
        };
        var h0 = randn(new long[] { b, h, dk, dv }, generator: gen).Times(0.5);
        return (q, k, v, beta, logAlpha, h0);
    }

    private static Tensor L2Normalize(Tensor x) => x * x.Squared().sum(-1, keepdim: true).Plus(1e-6).rsqrt();

    private static double RelErr(Tensor expected, Tensor actual)
    {
        var e = expected.to(ScalarType.Float64);
        var a = actual.to(ScalarType.Float64);
        return (e - a).Squared().mean().sqrt().item<double>() / Math.Max(e.Squared().mean().sqrt().item<double>(), 1e-30);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ChunkedEqualsRecurrentWithGradients(int t, double betaMax, string gate)
    {
        var results = new List<Tensor[]>();
        foreach (bool chunked in new[] { false, true })
        {
            var (q, k, v, beta, logAlpha, h0) = Inputs(t, betaMax, gate, seed: (ulong)(t * 7 + (int)betaMax));
            var leaves = new List<Tensor> { q, k, v, beta, h0 };
            if (logAlpha is not null)
                leaves.Add(logAlpha);
            foreach (var x in leaves)
                x.requires_grad_(true);
            // k is a leaf here (already normalized): the kernels must be exact for any k; normalization is the layer's.
            using var gen = new torch.Generator(11);
            var wo = randn(new long[] { 2, t, 3, 16 }, generator: gen);
            var ws = randn(new long[] { 2, 3, 16, 16 }, generator: gen);
            var (o, s) = chunked
                ? DeltaRuleChunked.Forward(q, k, v, beta, logAlpha, 0.25, h0)
                : DeltaRuleRecurrent.Forward(q, k, v, beta, logAlpha, 0.25, h0);
            (o * wo).sum().Plus((s * ws).sum()).backward();
            results.Add(new[] { o.detach(), s.detach() }.Concat(leaves.Select(x => x.grad!)).ToArray());
        }

        var names = new[] { "output", "final state", "dq", "dk", "dv", "dβ", "dh0", "dlogα" };
        var report = new List<string>();
        for (int i = 0; i < results[0].Length; i++)
        {
            double tolerance = i < 2 ? 1e-5 : 1e-4;
            double err = RelErr(results[0][i], results[1][i]);
            report.Add($"{names[i]} {err:E2}");
            TensorAssert.RelClose($"T={t} β<{betaMax} gate={gate} {names[i]}", results[0][i], results[1][i], tolerance);
        }

        output.WriteLine($"T={t} β<{betaMax} gate={gate}: " + string.Join(", ", report));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("mild")]
    public void PrefillThenStepsEqualsOnePass(string gate)
    {
        var (q, k, v, beta, logAlpha, h0) = Inputs(150, 2.0, gate, seed: 8);
        var (oAll, sAll) = DeltaRuleChunked.Forward(q, k, v, beta, logAlpha, 0.25, h0);
        var (oHead, state) = DeltaRuleChunked.Forward(q.narrow(1, 0, 100), k.narrow(1, 0, 100), v.narrow(1, 0, 100),
            beta.narrow(1, 0, 100), logAlpha?.narrow(1, 0, 100), 0.25, h0);
        var outs = new List<Tensor> { oHead };
        for (int i = 100; i < 150; i++)
        {
            (var o, state) = DeltaRuleRecurrent.Step(q.select(1, i), k.select(1, i), v.select(1, i), beta.select(1, i),
                logAlpha?.select(1, i), state, 0.25);
            outs.Add(o.unsqueeze(1));
        }

        TensorAssert.RelClose("prefill + steps", oAll, cat(outs, 1), 1e-5);
        TensorAssert.RelClose("state", sAll, state, 1e-5);
    }

    [Fact]
    public void WriteOverwritesTheValueStoredAtAKey()
    {
        // The delta rule's defining property (DeltaNet): with β = 1 and a unit key, a write replaces what the state
        // held at that key instead of adding to it; other orthogonal keys are untouched. A chunk of 4 puts the two
        // writes to e0 in different chunks and the read in a third.
        var k = zeros(1, 6, 1, 4);
        foreach (var (step, axis) in new[] { (0, 0), (1, 1), (4, 0) })
            k[0, step, 0, axis] = tensor(1f);
        var v = randn(new long[] { 1, 6, 1, 3 }, generator: new torch.Generator(1));
        var beta = ones(1, 6, 1);
        beta[0, 2, 0] = tensor(0f);
        beta[0, 3, 0] = tensor(0f);
        beta[0, 5, 0] = tensor(0f);
        foreach (bool chunked in new[] { false, true })
        {
            var (_, s) = chunked
                ? DeltaRuleChunked.Forward(k, k, v, beta, null, 1.0, chunkSize: 4)
                : DeltaRuleRecurrent.Forward(k, k, v, beta, null, 1.0);
            TensorAssert.Close("value at e0 (overwritten)", v[0, 4, 0], s[0, 0, 0], 1e-6);
            TensorAssert.Close("value at e1 (kept)", v[0, 1, 0], s[0, 0, 1], 1e-6);
            TensorAssert.Close("nothing at e2", zeros(3), s[0, 0, 2], 1e-6);
        }
    }

    [Fact]
    public void VeryLongSpanStaysFinite()
    {
        // 4096 steps of strong decay and β up to 2: the cumulative gate reaches about −4·10⁴, inside no exponent.
        var (q, k, v, beta, logAlpha, _) = Inputs(4096, 2.0, "strong", seed: 12, b: 1, h: 1);
        var (o, s) = DeltaRuleChunked.Forward(q, k, v, beta, logAlpha, 0.25);
        Assert.True(o.isfinite().all().item<bool>());
        Assert.True(s.isfinite().all().item<bool>());
    }
}
