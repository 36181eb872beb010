using Linearize.Checkpoints;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>
/// <c>convert --gate learned</c> and <c>--output-norm rmsnorm</c> end to end on stories260K: the converted model loads
/// and generates the same text on the engine as in TorchSharp; attention transfer (<c>distill</c>), <c>train
/// --train-modules g_proj</c> and the pipeline train the added projections (docs/METHODS.md §1.8–1.9).
/// </summary>
[Collection("Torch")]
public sealed class LigerVariantCliTests
{
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void ConvertedModelsLoadAndGenerateTheSameOnTheEngineAsInTorch()
    {
        using var dir = new TempDir();
        foreach (var (name, options) in new[]
                 {
                     ("gla-learned-rms", new[] { "--method", "liger-gla", "--gate", "learned", "--output-norm", "rmsnorm" }),
                     ("gdn-learned", new[] { "--method", "liger-gdn", "--gate", "learned", "--gate-bias", "3" }),
                     ("hgrn2-rms", new[] { "--method", "liger-hgrn2", "--output-norm", "rmsnorm" }),
                 })
        {
            string converted = dir.File(name);
            var (exit, output, err) = CliHarness.Run(new[] { "convert", "--model", SharedData.Stories260KDir, "--out", converted }.Concat(options).ToArray());
            Assert.True(exit == 0, err);
            Assert.Contains(options.Contains("rmsnorm") ? "rmsnorm" : "learned gate", output + err);
            string[] generate = { "generate", "--model", converted, "--prompt", "The little dog", "-n", "40" };
            var (genExit, engineText, genErr) = CliHarness.Run(generate);
            Assert.True(genExit == 0, genErr);
            var (torchExit, torchText, _) = CliHarness.Run(generate.Concat(new[] { "--engine", "torch" }).ToArray());
            Assert.Equal(0, torchExit);
            Assert.StartsWith("The little dog", engineText);
            Assert.Equal(torchText, engineText);
        }
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void DistillTrainModulesAndThePipelineTrainTheAddedProjections()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), distilled = dir.File("distill"), trained = dir.File("train"), pipe = dir.File("pipe");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gdn", "--gate", "learned", "--out", converted).Exit);
        string[] data = { "--data", SharedData.TinyStoriesVal, "--skip-docs", "1000", "--seq-len", "128", "--grad-accum", "1", "--max-steps", "2", "--val-records", "10" };

        var (exit, _, err) = CliHarness.Run(new[] { "distill", "--model", converted, "--text-split", "stream", "--eval-every", "2", "--out", distilled }.Concat(data).ToArray());
        Assert.True(exit == 0, err);
        AssertMoved(converted, Path.Combine(distilled, "model"), moved: new[] { "g_proj", "b_proj" });

        (exit, _, err) = CliHarness.Run(new[] { "train", "--model", converted, "--train-modules", "g_proj", "--eval-every", "2", "--out", trained }.Concat(data).ToArray());
        Assert.True(exit == 0, err);
        AssertMoved(converted, Path.Combine(trained, "model"), moved: new[] { "g_proj" });

        (exit, _, err) = CliHarness.Run(new[] { "pipeline", "--model", SharedData.Stories260KDir, "--method", "liger-gdn", "--gate", "learned", "--eval-text", SharedData.TinyStoriesVal, "--eval-docs", "3", "--out", pipe }.Concat(data).ToArray());
        Assert.True(exit == 0, err);
        AssertMoved(converted, Path.Combine(pipe, "merged"), moved: new[] { "g_proj", "b_proj" });
        var (genExit, text, genErr) = CliHarness.Run("generate", "--model", Path.Combine(pipe, "merged"), "--prompt", "Once", "-n", "20");
        Assert.True(genExit == 0, genErr);
        Assert.StartsWith("Once", text);
    }

    /// <summary>Every layer's <paramref name="moved"/> projections differ between the two model directories.</summary>
    private static void AssertMoved(string before, string after, string[] moved)
    {
        using var a = SafetensorsCheckpoint.Open(before);
        using var b = SafetensorsCheckpoint.Open(after);
        foreach (var module in moved)
            for (int layer = 0; layer < 5; layer++)
            {
                string name = $"model.layers.{layer}.self_attn.{module}.weight";
                using var x = a.Read(name);
                using var y = b.Read(name);
                Assert.False(x.allclose(y, 0, 0), $"{after}: {name} did not train");
            }
    }
}
