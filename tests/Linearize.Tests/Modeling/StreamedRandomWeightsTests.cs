using Linearize.Checkpoints;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Modeling;

/// <summary>Checkpoints written tensor by tensor (no model in memory) hold what a model built in memory holds.</summary>
[Collection("Torch")]
public sealed class StreamedRandomWeightsTests
{
    /// <summary>The layout computed from the config is the model's own parameter list, name for name and shape for shape.</summary>
    [Theory]
    [MemberData(nameof(TinyModels.Variants), MemberType = typeof(TinyModels))]
    public void LayoutIsTheModelsParameters(string variant)
    {
        var config = TinyModels.Config(variant);
        using var model = new LlamaForCausalLM(config);
        var expected = model.named_parameters().Select(p => (p.name, p.parameter.shape)).OrderBy(p => p.name, StringComparer.Ordinal).ToArray();
        var layout = LlamaTensorLayout.For(config);
        Assert.Equal(expected.Select(e => e.name), layout.Select(l => l.Name));
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i].shape, layout[i].Shape);
    }

    /// <summary>Float32 entries are bit for bit the weights Initialize draws into a model; bfloat16 ones are those weights
    /// rounded.</summary>
    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void EntriesDrawWhatInitializeDraws(string variant)
    {
        var config = TinyModels.Config(variant);
        using var model = new LlamaForCausalLM(config);
        RandomWeights.Initialize(model, 11);
        var state = model.state_dict();
        foreach (var type in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            foreach (var e in RandomWeights.Entries(config, 11, type))
            {
                using var t = e.Produce();
                Assert.Equal(type, t.dtype);
                using var want = state[e.Name].to(type);
                Assert.True(t.equal(want).all().item<bool>(), $"{e.Name} ({type}) differs from the in-memory model's");
            }
    }

    [Fact]
    public void EntriesRefuseToBeDrawnOutOfOrder()
    {
        var entries = RandomWeights.Entries(TinyModels.Config("gqa-untied"), 1, ScalarType.Float32);
        Assert.Throws<InvalidOperationException>(() => entries[1].Produce());
    }

    /// <summary>create-random --dtype bfloat16 with small shards: the shards and index load as the model, holding the
    /// in-memory model's weights rounded to bfloat16.</summary>
    [Fact]
    public void CreateRandomWritesShardedBfloat16ThatLoads()
    {
        using var dir = TinyModels.TempDirectory();
        string outDir = Path.Combine(dir.Path, "m");
        var (exit, _, err) = CliHarness.Run("create-random", "--preset", "recall", "--seed", "5", "--dtype", "bfloat16",
            "--shard-size-mib", "1", "--out", outDir);
        Assert.True(exit == 0, err);
        Assert.True(File.Exists(Path.Combine(outDir, SafetensorsWriter.IndexFileName)), "expected shards and an index");
        Assert.True(Directory.GetFiles(outDir, "model-*-of-*.safetensors").Length >= 2);
        using var loaded = ModelLoader.Load(ModelSource.Resolve(outDir, null), ScalarType.BFloat16);
        using var reference = new LlamaForCausalLM(ModelPresets.Get("recall"));
        RandomWeights.Initialize(reference, 5);
        var want = reference.state_dict();
        foreach (var (name, t) in loaded.state_dict())
        {
            using var rounded = want[name].to(ScalarType.BFloat16);
            Assert.True(t.equal(rounded).all().item<bool>(), name);
        }

        var (badExit, _, badErr) = CliHarness.Run("create-random", "--preset", "stories260k", "--format", "llama2c", "--dtype", "bfloat16",
            "--out", Path.Combine(dir.Path, "x.bin"));
        Assert.NotEqual(0, badExit);
        Assert.Contains("--dtype bfloat16 applies to --format hf", badErr);
    }
}
