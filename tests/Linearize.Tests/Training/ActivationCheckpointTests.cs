using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using Linearize.Training.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Training;

/// <summary>Recomputing each layer in the backward pass (<c>--checkpoint-activations</c>) gives the loss and every
/// gradient the plain backward gives: in full training, and with LoRA on a frozen base (where only parameters inside
/// the layers require gradients).</summary>
[Collection("Torch")]
public sealed class ActivationCheckpointTests
{
    [Theory]
    [InlineData("teacher", false)]
    [InlineData("teacher", true)]
    [InlineData("liger-gla", true)]
    [InlineData("liger-gdn", false)]
    [InlineData("lolcats-tk", true)]
    public void CheckpointedGradientsEqualPlain(string method, bool lora)
    {
        var plain = Gradients(method, lora, checkpoint: false);
        var checkpointed = Gradients(method, lora, checkpoint: true);
        Assert.Equal(plain.Keys.OrderBy(k => k), checkpointed.Keys.OrderBy(k => k));
        Assert.NotEmpty(plain);
        foreach (var (name, expected) in plain)
        {
            var actual = checkpointed[name];
            Assert.True(expected.Length == actual.Length, name);
            double scale = Math.Max(1e-6, expected.Max(Math.Abs));
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * scale, $"{name}[{i}]: {expected[i]} vs {actual[i]}");
        }
    }

    /// <summary>The loss (under the key "loss") and the gradient of every trainable parameter after one backward pass.</summary>
    private static Dictionary<string, float[]> Gradients(string method, bool lora, bool checkpoint)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LigerOrLolcats(method));
        if (lora)
        {
            foreach (var p in model.parameters())
                p.requires_grad = false;
            LoraInjector.Inject(model, new LoraOptions { Targets = new[] { "q_proj", "v_proj", "o_proj", "down_proj" } }, seed: 3);
            using var noGrad = no_grad();
            // LoRA's B starts at zero, which would leave A's gradients zero: give B values so both are compared.
            foreach (var (name, p) in model.named_parameters().Where(x => x.name.Contains("lora_B", StringComparison.Ordinal)))
                p.copy_(torch.randn(p.shape, generator: new torch.Generator(11)).Times(0.1));
        }

        model.Model.CheckpointActivations = checkpoint;
        model.train();
        using var generator = new torch.Generator(5);
        using var ids = torch.randint(0, model.Config.VocabSize, new long[] { 2, 37 }, dtype: ScalarType.Int64, generator: generator);
        using var logits = model.Forward(ids);
        using var loss = nn.functional.cross_entropy(logits.narrow(1, 0, 36).reshape(-1, logits.shape[2]), ids.narrow(1, 1, 36).reshape(-1));
        loss.backward();
        var result = new Dictionary<string, float[]> { ["loss"] = new[] { loss.item<float>() } };
        foreach (var (name, p) in model.named_parameters().Where(x => x.parameter.requires_grad))
            result[name] = p.grad is null ? Array.Empty<float>() : p.grad.to(ScalarType.Float32).data<float>().ToArray();
        return result;
    }

    private static Linearize.Checkpoints.Configuration.LinearizationConfig LigerOrLolcats(string method) =>
        method.StartsWith("lolcats", StringComparison.Ordinal) ? LolcatsConversionTests.Lin(method) : LigerConversionTests.Lin(method);
}
