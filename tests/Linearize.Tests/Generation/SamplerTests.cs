using Linearize.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Generation;

[Collection("Torch")]
public sealed class SamplerTests
{
    private static Tensor Logits() => torch.tensor(new float[] { 0.1f, 2.5f, -1f, 2.4f, 0f, 1.9f });

    [Fact]
    public void GreedyIsArgmax()
    {
        using var s = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(1, s.Sample(Logits()));
    }

    [Fact]
    public void SameSeedSameSamples()
    {
        var opts = new SamplingOptions(Temperature: 1.5, Seed: 42);
        using var a = new Sampler(opts);
        using var b = new Sampler(opts);
        var xs = Enumerable.Range(0, 50).Select(_ => a.Sample(Logits())).ToArray();
        var ys = Enumerable.Range(0, 50).Select(_ => b.Sample(Logits())).ToArray();
        Assert.Equal(xs, ys);
        Assert.True(xs.Distinct().Count() > 2, "temperature 1.5 should visit several tokens");
    }

    [Fact]
    public void TopKAndTopPRestrictTheSupport()
    {
        using var k2 = new Sampler(new SamplingOptions(Temperature: 5, TopK: 2, Seed: 1));
        Assert.All(Enumerable.Range(0, 100).Select(_ => k2.Sample(Logits())), t => Assert.Contains(t, new[] { 1, 3 }));
        using var p = new Sampler(new SamplingOptions(Temperature: 1, TopP: 0.01, Seed: 1));
        Assert.All(Enumerable.Range(0, 20).Select(_ => p.Sample(Logits())), t => Assert.Equal(1, t));
    }

    [Fact]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<LinearizeException>(() => new SamplingOptions(TopP: 0).Validate());
        Assert.Throws<LinearizeException>(() => new SamplingOptions(Temperature: -1).Validate());
    }
}
