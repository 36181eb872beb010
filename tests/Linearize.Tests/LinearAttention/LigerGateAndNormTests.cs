using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>The learned gate (<c>g_proj</c>, docs/METHODS.md §1.8) and the RMSNorm read-out (§1.9): decoding equals the
/// forward pass, the untrained learned gate starts as the key-pooled one, streaming conversion equals in-memory.</summary>
[Collection("Torch")]
public sealed class LigerGateAndNormTests
{
    /// <summary><c>method[+learned][+rmsnorm]</c>.</summary>
    public static IEnumerable<object[]> Variants() => new[]
    {
        "liger-gla+learned", "liger-mamba2+learned", "liger-mlstm+learned", "liger-retention+learned", "liger-gdn+learned",
        "liger-gla+rmsnorm", "liger-hgrn2+rmsnorm", "liger-mamba2+rmsnorm", "liger-retention+learned+rmsnorm",
    }.Select(v => new object[] { v });

    internal static LinearizationConfig Lin(string variant, double? bias = null)
    {
        var parts = variant.Split('+');
        var lin = LigerConversionTests.Lin(parts[0]);
        return lin with
        {
            Liger = lin.Liger with
            {
                Gate = parts.Contains("learned") ? LigerGate.Learned : LigerGate.Keys,
                LearnedGateBias = bias,
                OutputNorm = parts.Contains("rmsnorm") ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
            },
        };
    }

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void DecodingEqualsFullForward(string variant)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(variant));
        using var noGrad = no_grad();
        // A trained-looking gate: random g_proj (and b_proj), so heads of one KV group decay differently.
        using (var g = new torch.Generator(9))
            foreach (var layer in model.Model.Layers)
                if (layer.SelfAttention is LigerAttention a)
                    foreach (var p in a.TransferParameters)
                        p.normal_(0, 0.3, g);
        var ids = Ids(model.Config.VocabSize, 150, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 70), cache) };
        for (int t = 70; t < 150; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.RelClose(variant, full, cat(parts, 1), 1e-5);
    }

    /// <summary>Initialised from the pooled keys, the learned gate is the key-pooled gate of the scalar families exactly
    /// (Mamba2 through <c>−softplus(p) = logsigmoid(−p)</c>).</summary>
    [Theory]
    [InlineData("liger-mamba2")]
    [InlineData("liger-mlstm")]
    [InlineData("liger-retention")]
    [InlineData("liger-gdn")]
    public void UntrainedLearnedGateEqualsTheKeyPooledGate(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var keys = Converter.Convert(teacher, Lin(method));
        using var learned = Converter.Convert(teacher, Lin(method + "+learned"));
        Assert.Contains(learned.state_dict().Keys, k => k.EndsWith(".self_attn.g_proj.weight", StringComparison.Ordinal));
        using var noGrad = no_grad();
        var ids = Ids(keys.Config.VocabSize, 90, 2);
        TensorAssert.RelClose(method, keys.Forward(ids), learned.Forward(ids), 1e-5);
    }

    [Fact]
    public void AGateBiasStartsFromZeroWeightsAndThatBias()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("liger-gla+learned", bias: 4.0));
        var weights = model.state_dict();
        Assert.Equal(0.0, weights["model.layers.0.self_attn.g_proj.weight"].abs().max().item<float>());
        Assert.True(weights["model.layers.0.self_attn.g_proj.bias"].Eq(4.0).all().item<bool>());
        Assert.Contains("learned gate", model.Model.Layers[0].SelfAttention.Describe());
    }

    [Theory]
    [InlineData("liger-gla+learned+rmsnorm", "float32")]
    [InlineData("liger-gdn+learned", "bfloat16")]
    public void StreamedConversionEqualsInMemory(string variant, string dtypeName)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var dir = TinyModels.TempDirectory();
        string teacherDir = Path.Combine(dir.Path, "teacher"), inMemory = Path.Combine(dir.Path, "a"), streamed = Path.Combine(dir.Path, "b");
        using (var teacher = TinyModels.Create("gqa-untied"))
            ModelLoader.SaveHuggingFace(teacher, teacher.Config, teacherDir, null);
        var lin = Lin(variant);
        using (var teacher = ModelLoader.Load(ModelSource.Resolve(teacherDir, null), dtype))
        using (Converter.ConvertToDirectory(teacher, lin, inMemory, null))
        {
        }

        var result = StreamingConverter.Convert(teacherDir, lin, dtype, streamed, null);
        Assert.True(result.AddedTensors > 0);
        using var a = ModelLoader.Load(ModelSource.Resolve(inMemory, null), dtype);
        using var b = ModelLoader.Load(ModelSource.Resolve(streamed, null), dtype);
        var sb = b.state_dict();
        foreach (var (name, t) in a.state_dict())
            Assert.True(t.equal(sb[name]).all().item<bool>(), $"{variant}: {name} differs");
    }

    [Theory]
    [InlineData("liger-hgrn2+learned")]
    [InlineData("liger-gsa+learned")]
    [InlineData("liger-deltanet+learned")]
    [InlineData("liger-gsa+rmsnorm")]
    [InlineData("liger-gdn+rmsnorm")]
    public void FamiliesWithoutThePieceAreRefused(string variant)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var e = Assert.Throws<LinearizeException>(() => Converter.Convert(teacher, Lin(variant)));
        Assert.Contains(variant.Contains("learned") ? "learned gate" : "RMSNorm", e.Message);
    }
}
