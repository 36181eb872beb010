using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Training.Lora;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Training;

[Collection("Torch")]
public sealed class LoraTests
{
    private static Tensor Ids(long vocab) { using var g = new torch.Generator(1); return randint(3, vocab, new long[] { 2, 17 }, dtype: ScalarType.Int64, generator: g); }

    [Fact]
    public void FreshAdapterIsANoOp()
    {
        using var model = TinyModels.Create("gqa-untied");
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize);
        var before = model.Forward(ids);
        var report = LoraInjector.Inject(model, new LoraOptions { Targets = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "up_proj" } }, 3);
        Assert.Equal(2 * 5, report.Modules);
        TensorAssert.Close("B = 0", before, model.Forward(ids), 0);
    }

    [Fact]
    public void OnlyAdaptersAreTrainableAndReported()
    {
        using var model = TinyModels.Create("qwen2-bias");
        var report = LoraInjector.Inject(model, new LoraOptions { Rank = 4 }, 3);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, n => Assert.Matches(@"\.(q|k|v)_proj\.lora_[AB]\.weight$", n));
        // per layer: q 32→32, k 32→8, v 32→8 with rank 4: A 4×32 each, B out×4
        long perLayer = (4 * 32 + 32 * 4) + (4 * 32 + 8 * 4) * 2;
        Assert.Equal(2 * perLayer, report.TrainableParameters);
        Assert.Contains("model.layers.0.self_attn.q_proj.base_layer.weight", model.state_dict().Keys);
    }

    [Fact]
    public void MergedWeightsGiveTheAdapterModelsLogits()
    {
        using var model = TinyModels.Create("gqa-untied");
        LoraInjector.Inject(model, new LoraOptions { Rank = 4, Alpha = 16, Targets = new[] { "q_proj", "v_proj", "down_proj" } }, 3);
        using (no_grad())
        {
            using var g = new torch.Generator(9);
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("lora_B")))
                p.copy_(randn(p.shape, generator: g).Times(0.3));
        }

        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize);
        var adapted = model.Forward(ids);
        Assert.Equal(3 * 2, LoraInjector.Merge(model));
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora_"));
        TensorAssert.Close("merged", adapted, model.Forward(ids), 1e-5);
    }

    [Fact]
    public void AdapterSaveLoadRoundTrips()
    {
        using var dir = new TempDir();
        var options = new LoraOptions { Rank = 2, Alpha = 4, Targets = new[] { "k_proj", "o_proj" } };
        using var model = TinyModels.Create("gqa-untied");
        LoraInjector.Inject(model, options, 3);
        using (no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.Contains("lora_B")))
                p.FillWith(0.05);

        LoraAdapterFile.Save(model, options, dir.Path, "base");
        using var file = Linearize.Checkpoints.SafetensorsFile.Open(dir.File(LoraAdapterFile.WeightsName));
        Assert.Contains("base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight", file.Names);

        using var other = TinyModels.Create("gqa-untied");
        var loaded = LoraAdapterFile.Load(other, dir.Path);
        Assert.Equal(options.Targets, loaded.Targets);
        Assert.Equal(options.Alpha, loaded.Alpha);
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize);
        TensorAssert.Close("reloaded adapter", model.Forward(ids), other.Forward(ids), 0);
    }
}
