using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Checkpoints;

/// <summary>llama2.c export (what run.c reads in the benchmarks) is the exact inverse of the import.</summary>
[Collection("Torch")]
public sealed class Llama2cWriterTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WriteThenLoadGivesTheSameModel(bool tied)
    {
        var j = TinyModels.BaseJson(hidden: 32, heads: 4, kvHeads: 2);
        j["tie_word_embeddings"] = tied;
        var config = Linearize.Checkpoints.Configuration.LlamaConfig.FromJson(j, "tiny");
        using var model = TinyModels.Create(config);
        using var dir = TinyModels.TempDirectory();
        string path = Path.Combine(dir.Path, "tiny.bin");
        Llama2cWriter.Write(model, path);
        using var loaded = ModelLoader.Load(ModelSource.Resolve(path, null));
        var expected = model.state_dict();
        foreach (var (name, t) in loaded.state_dict())
            TensorAssert.BitEqual(name, expected[name], t);
        using var noGrad = no_grad();
        var ids = torch.tensor(new long[] { 1, 5, 9, 22, 3 }).view(1, -1);
        TensorAssert.Close("logits", model.Forward(ids), loaded.Forward(ids), 1e-6);
    }

    [Fact]
    public void ModelsTheFormatCannotHoldAreRefused()
    {
        using var model = TinyModels.Create("qwen2-bias");
        using var dir = TinyModels.TempDirectory();
        string path = Path.Combine(dir.Path, "x.bin");
        var e = Assert.Throws<LinearizeException>(() => Llama2cWriter.Write(model, path));
        Assert.Contains("llama2.c", e.Message);
        Assert.False(File.Exists(path));
    }
}
