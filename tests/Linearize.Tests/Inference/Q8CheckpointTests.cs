using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference;

/// <summary>
/// The q8 engine checkpoint (<see cref="Q8Checkpoint"/>, written by <see cref="EngineQuantizer"/>): the engine maps its
/// quants and scales in place and computes exactly what it computes when it quantizes the original at load
/// (<c>--weight-dtype q8</c>), bit for bit, for a teacher and for converted models whose mixers read parameters of
/// their own, and so does its copy (<c>--no-mmap</c>); TorchSharp paths refuse it with an error naming it; damaged q8 tensors are errors naming the file.
/// </summary>
[Collection("Torch")]
public sealed class Q8CheckpointTests
{
    [Theory]
    [InlineData("gqa-untied", "teacher", "float32")]
    [InlineData("mha-tied", "teacher", "bfloat16")]
    [InlineData("qwen2-bias", "liger-gdn", "float32")]
    [InlineData("gqa-untied", "liger-gla", "bfloat16")]
    [InlineData("mha-tied", "lolcats-tk", "float32")]
    public void MappedQ8EqualsQuantizedAtLoad(string variant, string method, string dtype)
    {
        using var dir = TinyModels.TempDirectory();
        string original = Write(dir.Path, variant, method, dtype == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32);
        var result = EngineQuantizer.Quantize(original, dir.Path + "/q8", null);
        Assert.True(result.Matrices > 0);
        Assert.True(result.BytesAfter < result.BytesBefore);

        var options = new EngineOptions { Weights = WeightFormat.Q8, Threads = 2 };
        using var atLoad = Engines.Load(ModelSource.Resolve(original, null), options);
        // No --weight-dtype: a q8 checkpoint runs as q8 (EngineOptions.KeepStoredQ8), its matrices mapped, none packed.
        using var mapped = Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null), new EngineOptions { Threads = 2 });
        Assert.Equal(WeightFormat.Q8, mapped.Options.Weights);
        Assert.Equal(0, atLoad.InPlaceWeightBytes);
        var config = LlamaConfig.Load(original + "/config.json");
        long norms = (2L * config.NumHiddenLayers + 1) * config.HiddenSize * sizeof(float);
        Assert.Equal(mapped.WeightBytes - norms, mapped.InPlaceWeightBytes);
        Assert.Equal(atLoad.WeightBytes, mapped.WeightBytes);

        // --no-mmap: the stored quants and scales copied as they are, not dequantized and quantized again.
        using var copied = Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null), new EngineOptions { Threads = 2, WeightsInPlace = false });
        Assert.Equal(0, copied.InPlaceWeightBytes);

        int vocab = config.VocabSize;
        var prompt = Enumerable.Range(0, 29).Select(i => 3 + i * 7 % (vocab - 3)).ToArray();
        foreach (var engine in new[] { mapped, copied })
        {
            using var a = atLoad.CreateSequence();
            using var b = engine.CreateSequence();
            Assert.Equal(atLoad.Prefill(a, prompt).ToArray(), engine.Prefill(b, prompt).ToArray());
            for (int t = 0; t < 9; t++)
                Assert.Equal(atLoad.Step(a, 5 + t).ToArray(), engine.Step(b, 5 + t).ToArray());
        }
    }

    /// <summary>Asked for another format, the q8 checkpoint's weights are dequantized into it: float32 then computes
    /// with exactly the weights q8 multiplies (though with float32 activations), so the logits stay close.</summary>
    [Fact]
    public void DequantizedOnRequest()
    {
        using var dir = TinyModels.TempDirectory();
        string original = Write(dir.Path, "gqa-untied", "teacher", ScalarType.Float32);
        EngineQuantizer.Quantize(original, dir.Path + "/q8", null);
        using var q8 = Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null), new EngineOptions { Threads = 1 });
        using var f32 = Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null),
            new EngineOptions { Weights = WeightFormat.Float32, KeepStoredQ8 = false, Threads = 1 });
        Assert.Equal(WeightFormat.Float32, f32.Options.Weights);
        Assert.Equal(0, f32.InPlaceWeightBytes);
        using var a = q8.CreateSequence();
        using var b = f32.CreateSequence();
        var x = q8.Prefill(a, new[] { 3, 9, 27, 4 }).ToArray();
        var y = f32.Prefill(b, new[] { 3, 9, 27, 4 }).ToArray();
        double scale = x.Max(Math.Abs);
        Assert.All(x.Zip(y), p => Assert.InRange(Math.Abs(p.First - p.Second), 0, 0.05 * scale));
        Assert.NotEqual(x, y); // float32 activations: not the q8 products
    }

    [Fact]
    public void TorchSharpPathsRefuseIt()
    {
        using var dir = TinyModels.TempDirectory();
        string original = Write(dir.Path, "gqa-untied", "teacher", ScalarType.Float32);
        EngineQuantizer.Quantize(original, dir.Path + "/q8", null);
        var e = Assert.Throws<LinearizeException>(() => ModelLoader.Load(ModelSource.Resolve(dir.Path + "/q8", null)));
        Assert.Contains(dir.Path + "/q8", e.Message);
        Assert.Contains("q8 engine checkpoint", e.Message);
        var again = Assert.Throws<LinearizeException>(() => EngineQuantizer.Quantize(dir.Path + "/q8", dir.Path + "/q8q8", null));
        Assert.Contains("already", again.Message);
        Assert.False(Directory.Exists(dir.Path + "/q8q8"));
    }

    /// <summary>Rows of a length no width has, or a tensor of the earlier layout (quants and scales apart), are an error
    /// naming the checkpoint and the tensor, not garbage weights.</summary>
    [Fact]
    public void DamagedOrEarlierLayoutRowsAreAnErrorNamingTheFile()
    {
        using var dir = TinyModels.TempDirectory();
        string original = Write(dir.Path, "gqa-untied", "teacher", ScalarType.Float32);
        EngineQuantizer.Quantize(original, dir.Path + "/q8", null);
        string file = dir.Path + "/q8/" + SafetensorsWriter.SingleFileName;
        Dictionary<string, Tensor> tensors;
        using (var checkpoint = SafetensorsCheckpoint.Open(dir.Path + "/q8"))
            tensors = checkpoint.Names.ToDictionary(n => n, n => checkpoint.Read(n));
        string matrix = "model.layers.0.mlp.down_proj.weight", rows = Q8Checkpoint.RowsName(matrix);
        var good = tensors[rows];
        try
        {
            // Rows a few bytes short, of a length no width gives.
            long length = good.shape[1] - 1;
            while (Q8RowLayout.ColsFromRowBytes(length) is not null)
                length--;
            tensors[rows] = good.narrow(1, 0, length).contiguous();
            SafetensorsWriter.Write(file, tensors);
            var e = Assert.Throws<LinearizeException>(() => Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null), new EngineOptions { Threads = 1 }));
            Assert.Contains(dir.Path + "/q8", e.Message);
            Assert.Contains(rows, e.Message);
            tensors[rows].Dispose();

            // The earlier layout: NAME.q8 beside NAME.q8_scales.
            tensors[rows] = good;
            tensors[Q8Checkpoint.SeparateScalesName(matrix)] = torch.zeros(1, 1);
            SafetensorsWriter.Write(file, tensors);
            e = Assert.Throws<LinearizeException>(() => Engines.Load(ModelSource.Resolve(dir.Path + "/q8", null), new EngineOptions { Threads = 1 }));
            Assert.Contains(dir.Path + "/q8", e.Message);
            Assert.Contains("linearize quantize", e.Message);
        }
        finally
        {
            if (!tensors.Values.Any(t => ReferenceEquals(t, good)))
                good.Dispose();
            foreach (var t in tensors.Values)
                t.Dispose();
        }
    }

    [Theory]
    [InlineData("model.embed_tokens.weight", true)]
    [InlineData("lm_head.weight", true)]
    [InlineData("model.layers.12.self_attn.q_proj.weight", true)]
    [InlineData("model.layers.0.self_attn.b_proj.weight", true)]
    [InlineData("model.layers.3.mlp.down_proj.weight", true)]
    [InlineData("model.layers.3.mlp.down_proj.bias", false)]
    [InlineData("model.layers.0.input_layernorm.weight", false)]
    [InlineData("model.layers.0.self_attn.feature_map_q.layer.weight", false)]
    [InlineData("model.norm.weight", false)]
    public void QuantizesExactlyTheMatricesTheEnginePacks(string name, bool quantized) =>
        Assert.Equal(quantized, Q8Checkpoint.IsEngineMatrix(name));

    /// <summary>The teacher <paramref name="variant"/> (or its <paramref name="method"/> conversion, layer 1 kept softmax)
    /// written in <paramref name="dtype"/> under <paramref name="root"/>.</summary>
    private static string Write(string root, string variant, string method, ScalarType dtype)
    {
        string path = root + "/m";
        using var teacher = TinyModels.Create(variant);
        teacher.to(dtype);
        if (method == "teacher")
            ModelLoader.SaveHuggingFace(teacher, teacher.Config, path, null);
        else
        {
            var lin = LinearizationMethods.Get(method, "test").Kind == MethodKind.Lolcats
                ? LolcatsConversionTests.Lin(method, softmaxLayers: new[] { 1 })
                : LigerConversionTests.Lin(method) with { SoftmaxLayers = new[] { 1 } };
            using var student = Converter.ConvertToDirectory(teacher, lin, path, null);
        }

        return path;
    }
}
