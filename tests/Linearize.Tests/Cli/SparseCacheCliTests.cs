using System.Text.Json.Nodes;
using Linearize.Checkpoints.Configuration;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>
/// <c>convert --sparse-cache</c> (LoLA, docs/METHODS.md §1.7) end to end on the bundled stories260K: a LoLCATs
/// sliding-window model with a sparse cache is written, its config keeps the option through a load, and it generates the
/// same text on the engine as in TorchSharp; methods without the cache refuse the option in one line.
/// </summary>
[Collection("Torch")]
public sealed class SparseCacheCliTests
{
    [Fact]
    public void LolcatsSwConvertsWithASparseCacheThatRoundTripsAndDecodesAlikeOnBothEngines()
    {
        using var dir = new TempDir();
        string converted = dir.File("lolcats-sparse");
        var (exit, output, err) = CliHarness.Run("convert", "--model", SampleData.Stories260KDir, "--method", "lolcats-sw", "--window", "16",
            "--sparse-cache", "8", "--out", converted);
        Assert.True(exit == 0, err);
        Assert.Contains("sparse=8", output + err);
        var section = JsonNode.Parse(File.ReadAllText(Path.Combine(converted, "config.json")))![LinearizationConfig.SectionName]!;
        Assert.Equal(8, (int)section["sparse_cache"]!);
        var config = LlamaConfig.FromJson(JsonNode.Parse(File.ReadAllText(Path.Combine(converted, "config.json")))!.AsObject(), "converted");
        var lin = LinearizationConfig.FromModel(config)!;
        Assert.Equal((8, 16), (lin.Lolcats.SparseCache, lin.Lolcats.Window));
        Assert.Equal(section.ToJsonString(), lin.ToJson().ToJsonString());

        // Past the window and the slots, so pairs are offered, kept, replaced and folded.
        string[] generate = { "generate", "--model", converted, "--prompt", "The little dog", "-n", "60" };
        var (genExit, engineText, genErr) = CliHarness.Run(generate);
        Assert.True(genExit == 0, genErr);
        var (torchExit, torchText, torchErr) = CliHarness.Run(generate.Concat(new[] { "--engine", "torch" }).ToArray());
        Assert.True(torchExit == 0, torchErr);
        Assert.StartsWith("The little dog", engineText);
        Assert.Equal(torchText, engineText);
    }

    [Theory]
    [InlineData("lolcats-tk")]
    [InlineData("liger-gsa")]
    [InlineData("swa")]
    public void MethodsWithoutTheCacheRefuseTheOptionInOneLine(string method)
    {
        var (exit, _, err) = CliHarness.Run("convert", "--model", "missing-model", "--method", method, "--sparse-cache", "8", "--out", "o");
        Assert.Equal(1, exit);
        var lines = err.Trim().Split('\n');
        Assert.Single(lines);
        Assert.Contains($"--sparse-cache applies to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, liger-deltanet, lolcats-sw, not {method}", lines[0]);
    }
}
