using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>Converted models: decoding equals the forward pass, the window-only limit equals the teacher, constant state.</summary>
[Collection("Torch")]
public sealed class LigerConversionTests
{
    public static IEnumerable<object[]> Methods() => LinearizationMethods.Names.Select(m => new object[] { m });

    internal static LinearizationConfig Lin(string method, int window = 8, double alpha = 0.5, double beta = 0.5,
        int[]? softmaxLayers = null, int sinks = 0, bool normalize = false) => new()
    {
        Method = LinearizationMethods.Get(method, "test"),
        Sinks = sinks,
        SoftmaxLayers = softmaxLayers ?? Array.Empty<int>(),
        Liger = new LigerOptions
        {
            Family = LinearizationMethods.Get(method, "test").Family ?? LigerFamily.Gla,
            Window = window, Alpha = alpha, Beta = beta, NormalizeRecurrent = normalize,
            Slots = method == "liger-gsa" ? 4 : null,
        },
        Lolcats = new LolcatsOptions { Shape = LinearizationMethods.Get(method, "test").Shape ?? LolcatsWindowShape.Sw, Window = window },
    };

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void TokenByTokenDecodingEqualsFullForward(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method, sinks: method == "swa" ? 2 : 0));
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
    [InlineData("liger-gla")]
    [InlineData("liger-gsa")]
    [InlineData("liger-mamba2")]
    public void HybridAndNormalizedVariantsDecodeExactly(string method)
    {
        using var teacher = TinyModels.Create("mha-tied");
        using var model = Converter.Convert(teacher, Lin(method, softmaxLayers: new[] { 1 }, normalize: method != "liger-gsa"));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 40, 2);
        var full = model.Forward(ids);
        using var cache = model.CreateCache();
        var parts = Enumerable.Range(0, 40).Select(t => model.Forward(ids.narrow(1, t, 1), cache)).ToList();
        TensorAssert.RelClose(method, full, cat(parts, 1), 1e-5);
        Assert.Contains("softmax", model.Model.Layers[1].SelfAttention.Describe());
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void WindowOnlyLimitReproducesTheTeacher(string method)
    {
        // α = 1, β = 0 and a window ≥ T: the layer is the teacher's softmax attention.
        using var teacher = TinyModels.Create("qwen2-bias");
        using var model = Converter.Convert(teacher, Lin(method, window: 64, alpha: 1, beta: 0));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 50, 3);
        TensorAssert.Close(method, teacher.Forward(ids), model.Forward(ids), 1e-4);
    }

    [Fact]
    public void UntrainedMixChangesTheLogits()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("liger-gla"));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 30, 4);
        double diff = (teacher.Forward(ids) - model.Forward(ids)).abs().max().item<float>();
        Assert.True(diff > 1e-2, "a 0.5/0.5 Liger mix must differ from the teacher");
    }

    [Theory]
    [InlineData("liger-gla")]
    [InlineData("liger-gsa")]
    [InlineData("swa")]
    [InlineData("lolcats-sw")]
    [InlineData("lolcats-tk")]
    public void DecodingStateIsTheSameAt100And100kTokens(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method));
        using var noGrad = no_grad();
        long Bytes(int context)
        {
            using var cache = model.CreateCache();
            model.Forward(Ids(model.Config.VocabSize, context, 5, b: 1), cache);
            model.Forward(Ids(model.Config.VocabSize, 1, 6, b: 1), cache);
            return cache.StateBytes;
        }

        Assert.Equal(Bytes(100), Bytes(100_000)); // the bound: 100 vs 100,000 tokens of context
        using var teacherCache = teacher.CreateCache();
        teacher.Forward(Ids(teacher.Config.VocabSize, 100, 5, b: 1), teacherCache);
        long small = teacherCache.StateBytes;
        teacher.Forward(Ids(teacher.Config.VocabSize, 100, 5, b: 1), teacherCache);
        Assert.Equal(2 * small, teacherCache.StateBytes); // the teacher's KV cache grows linearly
    }

    [Fact]
    public void LeftPaddedBatchEqualsUnpaddedRows()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("liger-gla", window: 4));
        using var noGrad = no_grad();
        var row = new long[] { 5, 9, 11, 13, 17, 19, 23, 29 };
        var ids = tensor(new long[] { 0, 0, 0 }.Concat(row).ToArray()).view(1, -1);
        var mask = tensor(new long[] { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }).view(1, -1);
        var padded = model.Forward(ids, attentionMask: mask)[0].narrow(0, 3, 8);
        var plain = model.Forward(tensor(row).view(1, -1))[0];
        TensorAssert.Close("left padding", plain, padded, 1e-5);
    }

    [Fact]
    public void ConvertedDirectoryRoundTripsWithItsLinearizationSection()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.ConvertToDirectory(teacher, Lin("liger-hgrn2", softmaxLayers: new[] { 0 }), dir.Path, null);
        using var loaded = Linearize.Methods.ModelLoader.Load(new Linearize.Modeling.ModelSource(
            Linearize.Modeling.ModelSourceKind.HuggingFaceDirectory, dir.Path, null));
        Assert.Equal(new[] { "softmax", model.Model.Layers[1].SelfAttention.Describe() },
            loaded.Model.Layers.Select(l => l.SelfAttention.Describe()).ToArray());
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 20, 7);
        TensorAssert.Close("reloaded", model.Forward(ids), loaded.Forward(ids), 0);
        Assert.Throws<LinearizeException>(() => Converter.Convert(loaded, Lin("liger-gla")));
    }
}
