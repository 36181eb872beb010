using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>LoLCATs conversion: decoding equals the forward pass for both window shapes (with trained-looking,
/// non-identity feature maps and window factors), files keep the learned parameters under their reference names.</summary>
[Collection("Torch")]
public sealed class LolcatsConversionTests
{
    internal static LinearizationConfig Lin(string method, int window = 8, LolcatsFeatureMapKind map = LolcatsFeatureMapKind.Hedgehog,
        int[]? softmaxLayers = null, bool affine = false) => new()
    {
        Method = LinearizationMethods.Get(method, "test"),
        SoftmaxLayers = softmaxLayers ?? Array.Empty<int>(),
        Lolcats = new LolcatsOptions
        {
            Shape = LinearizationMethods.Get(method, "test").Shape!.Value, Window = window, FeatureMap = map, AffineAttentionFactors = affine,
            QueryBlock = 16,
        },
    };

    /// <summary>Converts and perturbs every feature map and window factor, as attention transfer would.</summary>
    internal static LlamaForCausalLM Converted(LlamaForCausalLM teacher, LinearizationConfig lin, ulong seed = 3)
    {
        var model = Converter.Convert(teacher, lin);
        using var gen = new torch.Generator(seed);
        using var noGrad = no_grad();
        foreach (var layer in model.Model.Layers)
            if (layer.SelfAttention is LolcatsAttention a)
                foreach (var p in a.TransferParameters)
                    p.PlusInPlace(randn(p.shape, generator: gen).Times(0.5));

        return model;
    }

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (var method in new[] { "lolcats-sw", "lolcats-tk" })
        {
            foreach (var variant in new[] { "gqa-untied", "mha-tied", "qwen2-bias", "linear-rope-headdim" })
                yield return new object[] { method, variant, "hedgehog" };
            yield return new object[] { method, "gqa-untied", "t2r" };
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TokenByTokenDecodingEqualsFullForward(string method, string variant, string map)
    {
        using var teacher = TinyModels.Create(variant);
        using var model = Converted(teacher, Lin(method, map: map == "t2r" ? LolcatsFeatureMapKind.T2r : LolcatsFeatureMapKind.Hedgehog));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 120, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        using var cache = model.CreateCache();
        // Prefill in two uneven chunks (neither aligned to the window nor to the block), then single steps.
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 29), cache), model.Forward(ids.narrow(1, 29, 22), cache) };
        for (int t = 51; t < 120; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.RelClose($"{method} {variant} {map}", full, cat(parts, 1), 1e-5);
    }

    [Theory]
    [InlineData("lolcats-sw")]
    [InlineData("lolcats-tk")]
    public void LeftPaddedBatchDecodesLikeUnpaddedRows(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converted(teacher, Lin(method, window: 4));
        using var noGrad = no_grad();
        var row = Ids(model.Config.VocabSize, 30, 9, b: 1);
        var padded = cat(new[] { zeros(1, 5, dtype: ScalarType.Int64), row }, 1);
        var mask = cat(new[] { zeros(1, 5, dtype: ScalarType.Int64), ones(1, 30, dtype: ScalarType.Int64) }, 1);
        var plain = model.Forward(row)[0];
        TensorAssert.RelClose("left padding", plain, model.Forward(padded, attentionMask: mask)[0].narrow(0, 5, 30), 1e-5);

        // Prefill the padded prompt's first 20 tokens, then decode the rest one token at a time.
        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(padded.narrow(1, 0, 20), cache, mask.narrow(1, 0, 20))[0].narrow(0, 5, 15) };
        for (int t = 20; t < 35; t++)
            parts.Add(model.Forward(padded.narrow(1, t, 1), cache, mask.narrow(1, 0, t + 1))[0]);
        TensorAssert.RelClose("left padding, decoded", plain, cat(parts, 0), 1e-5);
    }

    [Fact]
    public void HybridWithSoftmaxLayersAndAffineFactorsDecodesExactly()
    {
        using var teacher = TinyModels.Create("mha-tied");
        using var model = Converted(teacher, Lin("lolcats-tk", softmaxLayers: new[] { 1 }, affine: true));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 40, 2);
        var full = model.Forward(ids);
        using var cache = model.CreateCache();
        var parts = Enumerable.Range(0, 40).Select(t => model.Forward(ids.narrow(1, t, 1), cache)).ToList();
        TensorAssert.RelClose("hybrid", full, cat(parts, 1), 1e-5);
        Assert.Contains("softmax", model.Model.Layers[1].SelfAttention.Describe());
        Assert.Contains("λ=1−γ", model.Model.Layers[0].SelfAttention.Describe());
    }

    [Fact]
    public void UntrainedConversionIsIdentityMapsAndGammaOneTenth()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("lolcats-sw"));
        var a = (LolcatsAttention)model.Model.Layers[0].SelfAttention;
        var w = a.FeatureMapQ.Mlp.Weight; // [H, D, d'] with d' = min(64, head_dim) = head_dim here
        Assert.Equal(new long[] { 4, 8, 8 }, w.shape);
        TensorAssert.Close("identity", eye(8).unsqueeze(0).expand(4, 8, 8), w, 0);
        TensorAssert.Close("γ", TorchArithmetic.Full(new long[] { 4 }, 0.1f, ScalarType.Float32), a.Factors().Gamma, 1e-7);
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 60, 4);
        double diff = (teacher.Forward(ids) - model.Forward(ids)).abs().max().item<float>();
        Assert.True(diff > 1e-2, "with T > window the untrained hybrid differs from the teacher");
        // ... and equals it while every key is inside the window (docs/METHODS.md §2.4.1).
        TensorAssert.Close("T ≤ window", teacher.Forward(ids.narrow(1, 0, 8)), model.Forward(ids.narrow(1, 0, 8)), 1e-5);
    }

    [Fact]
    public void LearnedParametersAreSavedUnderTheReferenceNamesAndReload()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converted(teacher, Lin("lolcats-tk", map: LolcatsFeatureMapKind.T2r));
        ModelLoader.SaveHuggingFace(model, model.Config, dir.Path, null);
        using (var ckpt = SafetensorsCheckpoint.Open(dir.Path))
        {
            Assert.Contains("model.layers.1.self_attn.feature_map_q.mlp.layer", ckpt.Names);
            Assert.Contains("model.layers.1.self_attn.feature_map_k.mlp.bias", ckpt.Names);
            Assert.Contains("model.layers.0.self_attn.window_factors", ckpt.Names);
            Assert.Equal(new long[] { 1, 4, 1, 1 }, ckpt.GetInfo("model.layers.0.self_attn.window_factors").Shape);
        }

        using var loaded = ModelLoader.Load(new ModelSource(ModelSourceKind.HuggingFaceDirectory, dir.Path, null));
        Assert.Equal(model.Model.Layers[0].SelfAttention.Describe(), loaded.Model.Layers[0].SelfAttention.Describe());
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 40, 7);
        TensorAssert.Close("reloaded", model.Forward(ids), loaded.Forward(ids), 0);
    }
}
