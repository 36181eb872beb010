using Linearize.Inference;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Conversion;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// The delta-rule Liger layers (<c>liger-gdn</c>, <c>liger-deltanet</c>): decoding with a cache equals the forward
/// pass, padded steps change nothing, conversion adds only the zero-initialised <c>b_proj</c> and round-trips
/// through a directory, the options refuse what does not apply, and the engine refuses what it cannot run.
/// </summary>
[Collection("Torch")]
public sealed class LigerDeltaRuleTests
{
    private static LinearizationConfig Lin(string method, bool negativeEigenvalues = false, int window = 8) => new()
    {
        Method = method,
        Liger = new LigerOptions
        {
            Family = LinearizationConfig.FamilyOf(method), Window = window, NegativeEigenvalues = negativeEigenvalues,
        },
    };

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    /// <summary>Random b_proj weights, so that β varies by token and head (zero-initialised, it would be constant).</summary>
    private static void RandomizeBeta(LlamaForCausalLM model)
    {
        using var noGrad = no_grad();
        using var g = new torch.Generator(77);
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains(".b_proj."))
                p.copy_(randn(p.shape, generator: g).Times(0.5).to(p.dtype));
    }

    [Theory]
    [InlineData("liger-gdn", false)]
    [InlineData("liger-gdn", true)]
    [InlineData("liger-deltanet", false)]
    [InlineData("liger-deltanet", true)]
    public void TokenByTokenDecodingEqualsFullForward(string method, bool negativeEigenvalues)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method, negativeEigenvalues));
        RandomizeBeta(model);
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 150, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 70), cache) }; // chunked prefill across a chunk boundary
        for (int t = 70; t < 150; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.RelClose(method, full, cat(parts, 1), 1e-5);
    }

    [Theory]
    [InlineData("liger-gdn")]
    [InlineData("liger-deltanet")]
    public void LeftPaddedBatchEqualsUnpaddedRows(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method, window: 4));
        RandomizeBeta(model);
        using var noGrad = no_grad();
        var row = new long[] { 5, 9, 11, 13, 17, 19, 23, 29 };
        var ids = tensor(new long[] { 0, 0, 0 }.Concat(row).ToArray()).view(1, -1);
        var mask = tensor(new long[] { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }).view(1, -1);
        var padded = model.Forward(ids, attentionMask: mask)[0].narrow(0, 3, 8);
        var plain = model.Forward(tensor(row).view(1, -1))[0];
        TensorAssert.Close("left padding", plain, padded, 1e-5);
    }

    [Fact]
    public void ConversionAddsOnlyAZeroBetaProjectionAndRoundTrips()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.ConvertToDirectory(teacher, Lin("liger-gdn", negativeEigenvalues: true), dir.Path, null);
        var teacherNames = teacher.state_dict().Keys.ToHashSet();
        var added = model.state_dict().Where(kv => !teacherNames.Contains(kv.Key)).ToList();
        Assert.Equal(teacher.Config.NumHiddenLayers, added.Count);
        foreach (var (name, w) in added)
        {
            Assert.EndsWith(".self_attn.b_proj.weight", name);
            Assert.Equal(new long[] { teacher.Config.NumAttentionHeads, teacher.Config.HiddenSize }, w.shape);
            Assert.Equal(0, w.abs().max().item<float>());
        }

        using var loaded = ModelLoader.Load(new ModelSource(ModelSourceKind.HuggingFaceDirectory, dir.Path, null));
        Assert.Contains("liger-gdn", loaded.Model.Layers[0].SelfAttention.Describe());
        Assert.Contains("β∈(0,2)", loaded.Model.Layers[0].SelfAttention.Describe());
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 20, 7);
        TensorAssert.Close("reloaded", model.Forward(ids), loaded.Forward(ids), 0);
    }

    [Fact]
    public void OptionsRefuseWhatDoesNotApply()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var ex = Assert.Throws<LinearizeException>(() => Converter.Convert(teacher, Lin("liger-gla", negativeEigenvalues: true)));
        Assert.Contains("negative eigenvalues", ex.Message);
        var normalized = new LinearizationConfig
        {
            Method = "liger-deltanet",
            Liger = new LigerOptions { Family = LigerFamily.DeltaNet, NormalizeRecurrent = true },
        };
        Assert.Throws<LinearizeException>(() => Converter.Convert(teacher, normalized));
    }

    [Fact]
    public void EngineRefusesDeltaRuleLayersByName()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("liger-gdn"));
        var ex = Assert.Throws<LinearizeException>(() => DecodeEngine.Create(model));
        Assert.Contains("delta-rule", ex.Message);
    }
}
