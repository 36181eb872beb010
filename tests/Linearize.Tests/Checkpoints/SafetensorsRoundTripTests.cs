using Linearize.Checkpoints;
using Linearize.Methods;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Checkpoints;

[Collection("Torch")]
public sealed class SafetensorsRoundTripTests
{
    public static IEnumerable<object[]> DTypes() => new[]
    {
        ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16, ScalarType.Float64, ScalarType.Int32, ScalarType.Int64,
        ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
    }.Select(d => new object[] { d });

    private static Tensor Random(ScalarType dtype, long[] shape, torch.Generator g) => dtype switch
    {
        ScalarType.Bool => torch.rand(shape, generator: g).Gt(0.5),

        ScalarType.Byte or ScalarType.Int8 or ScalarType.Int16 or ScalarType.Int32 or ScalarType.Int64 =>
            torch.randint(-100, 100, shape, generator: g).to(dtype == ScalarType.Byte ? ScalarType.Int64 : dtype).abs().to(dtype),
        _ => torch.randn(shape, generator: g).to(dtype),
    };

    [Theory]
    [MemberData(nameof(DTypes))]
    public void WriteThenReadIsBitExact(ScalarType dtype)
    {
        using var dir = new TempDir();
        using var g = new torch.Generator(1);
        var tensors = new Dictionary<string, Tensor>
        {
            ["b.matrix"] = Random(dtype, new long[] { 7, 5 }, g),
            ["a.vector"] = Random(dtype, new long[] { 13 }, g),
            ["c.scalar"] = Random(dtype, Array.Empty<long>(), g),
            ["d.empty"] = Random(dtype, new long[] { 0, 3 }, g),
        };
        string path = dir.File("t.safetensors");
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["note"] = "x" });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("x", file.Metadata["note"]);
        Assert.Equal(0, (int)(file.DataStart % 8)); // header padded to a multiple of 8 bytes
        foreach (var (name, expected) in tensors)
        {
            using var actual = file.Read(name);
            TensorAssert.BitEqual(name, expected, actual);
        }
    }

    [Fact]
    public void KeysAreSortedAndOffsetsContiguous()
    {
        using var dir = new TempDir();
        string path = dir.File("t.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["z"] = torch.ones(3), ["a"] = torch.zeros(2, 2) });
        using var file = SafetensorsFile.Open(path);
        var a = file.GetInfo("a");
        var z = file.GetInfo("z");
        Assert.Equal(0, a.Begin);
        Assert.Equal(16, a.End);
        Assert.Equal(16, z.Begin);
        Assert.Equal(28, z.End);
    }

    [Fact]
    public void ShardedCheckpointLoadsThroughTheIndex()
    {
        using var dir = new TempDir();
        using var model = TinyModels.Create("gqa-untied");
        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)).ToList();
        long total = tensors.Sum(kv => kv.Value.numel() * 4);
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors, maxShardBytes: total / 3);
        Assert.True(File.Exists(dir.File(SafetensorsWriter.IndexFileName)));
        Assert.False(File.Exists(dir.File(SafetensorsWriter.SingleFileName)));
        using var ckpt = SafetensorsCheckpoint.Open(dir.Path);
        Assert.True(ckpt.Files.Count >= 3, $"expected ≥ 3 shards, got {ckpt.Files.Count}");
        using var copy = new Linearize.Modeling.Llama.LlamaForCausalLM(model.Config);
        StateDictLoader.Load(copy, new StateDictLoader.CheckpointSource(ckpt));
        foreach (var (name, t) in model.state_dict())
            TensorAssert.BitEqual(name, t, copy.state_dict()[name]);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void ModelSaveLoadRoundTripIsBitExact(ScalarType dtype)
    {
        using var dir = new TempDir();
        foreach (var variant in new[] { "gqa-untied", "mha-tied", "qwen2-bias" })
        {
            using var model = TinyModels.Create(variant);
            model.to(dtype);
            string outDir = System.IO.Path.Combine(dir.Path, variant);
            Linearize.Methods.ModelLoader.SaveHuggingFace(model, model.Config, outDir, null);
            using var loaded = Linearize.Methods.ModelLoader.Load(new Linearize.Modeling.ModelSource(
                Linearize.Modeling.ModelSourceKind.HuggingFaceDirectory, outDir, null), dtype);
            var saved = model.state_dict();
            foreach (var (name, t) in loaded.state_dict())
                TensorAssert.BitEqual($"{variant} {name}", saved[name], t);
            Assert.DoesNotContain(saved.Keys, k => k == "lm_head.weight" && model.Config.TieWordEmbeddings);
        }
    }
}
