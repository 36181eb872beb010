using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Modeling;

/// <summary>Incremental decoding with the KV cache must equal the full forward pass.</summary>
[Collection("Torch")]
public sealed class DecodeEqualsForwardTests
{
    [Theory]
    [MemberData(nameof(TinyModels.Variants), MemberType = typeof(TinyModels))]
    public void TokenByTokenEqualsFullForward(string variant)
    {
        using var model = TinyModels.Create(variant);
        using var noGrad = no_grad();
        using var g = new torch.Generator(3);
        var ids = torch.randint(3, model.Config.VocabSize, new long[] { 2, 23 }, dtype: ScalarType.Int64, generator: g);
        var full = model.Forward(ids);
        Assert.True(full.std().item<float>() > 0.1, "logits must vary, or the comparison proves nothing");

        using var cache = model.CreateCache();
        var steps = new List<Tensor>();
        for (int t = 0; t < ids.shape[1]; t++)
            steps.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.Close($"{variant} token-by-token", full, torch.cat(steps, 1), 1e-5);
    }

    [Theory]
    [MemberData(nameof(TinyModels.Variants), MemberType = typeof(TinyModels))]
    public void ChunkedPrefillThenDecodeEqualsFullForward(string variant)
    {
        using var model = TinyModels.Create(variant);
        using var noGrad = no_grad();
        using var g = new torch.Generator(4);
        var ids = torch.randint(3, model.Config.VocabSize, new long[] { 1, 30 }, dtype: ScalarType.Int64, generator: g);
        var full = model.Forward(ids);
        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 11), cache), model.Forward(ids.narrow(1, 11, 7), cache) };
        for (int t = 18; t < 30; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.Close($"{variant} chunked", full, torch.cat(parts, 1), 1e-5);
    }

    [Fact]
    public void LeftPaddedBatchEqualsUnpaddedRows()
    {
        using var model = TinyModels.Create("gqa-untied");
        using var noGrad = no_grad();
        var a = new long[] { 5, 9, 11, 13, 17, 19 };
        var b = new long[] { 23, 29, 31 };
        var ids = torch.tensor(new long[] { 5, 9, 11, 13, 17, 19, 0, 0, 0, 23, 29, 31 }).view(2, 6);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1 }).view(2, 6);
        var batched = model.Forward(ids, attentionMask: mask);
        TensorAssert.Close("row 0", model.Forward(torch.tensor(a).view(1, -1))[0], batched[0], 1e-5);
        TensorAssert.Close("row 1 (left-padded)", model.Forward(torch.tensor(b).view(1, -1))[0], batched[1].narrow(0, 3, 3), 1e-5);

        // Decoding one more token per row with the cache and a growing mask.
        using var cache = model.CreateCache();
        model.Forward(ids, cache, mask);
        var next = torch.tensor(new long[] { 37, 41 }).view(2, 1);
        var step = model.Forward(next, cache, torch.cat(new[] { mask, torch.ones(2, 1, dtype: ScalarType.Int64) }, 1));
        var refB = model.Forward(torch.tensor(new long[] { 23, 29, 31, 41 }).view(1, -1))[0, -1];
        TensorAssert.Close("row 1 decode step", refB, step[1, 0], 1e-5);
    }

    [Fact]
    public void BFloat16DecodeTracksFullForward()
    {
        using var model = TinyModels.Create("gqa-untied");
        model.to(ScalarType.BFloat16);
        using var noGrad = no_grad();
        using var g = new torch.Generator(5);
        var ids = torch.randint(3, model.Config.VocabSize, new long[] { 1, 16 }, dtype: ScalarType.Int64, generator: g);
        var full = model.Forward(ids);
        Assert.Equal(ScalarType.Float32, full.dtype);
        using var cache = model.CreateCache();
        var steps = Enumerable.Range(0, 16).Select(t => model.Forward(ids.narrow(1, t, 1), cache)).ToList();
        // bf16 has an 8-bit mantissa: different op orders round differently (fla's bf16 tolerance is ~1e-2 relative).
        TensorAssert.RelClose("bf16 token-by-token", full, torch.cat(steps, 1), 2e-2);
    }
}
