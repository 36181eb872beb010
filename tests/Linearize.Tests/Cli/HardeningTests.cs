using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>Issue 9: mistakes a new user makes end in a clear error and a non-zero exit, never a wrong result with exit 0.</summary>
[Collection("Torch")]
public sealed class HardeningTests
{
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void PerplexityOfAnEmptyTextIsAnErrorUnderBothProtocols()
    {
        using var dir = new TempDir();
        string empty = dir.File("empty.txt");
        File.WriteAllText(empty, "");
        foreach (var extra in new[] { new[] { "--rolling" }, Array.Empty<string>() })
        {
            var (exit, output, err) = CliHarness.Run(new[] { "eval", "ppl", "--model", SharedData.Stories260KDir, "--text", empty }.Concat(extra).ToArray());
            Assert.Equal(1, exit);
            Assert.DoesNotContain("perplexity", output);
            Assert.StartsWith($"error: {empty}: ", err.Trim());
        }
    }

    [Fact]
    public void PipelineWithoutAnEvaluationTextIsRefused()
    {
        var (exit, _, err) = CliHarness.Run("pipeline", "--model", "m", "--method", "liger-gla", "--data", "d.txt", "--out", "o");
        Assert.NotEqual(0, exit);
        Assert.Contains("--eval-text", err);
    }

    private static string Snapshot(string dir) =>
        string.Join("|", Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order()
            .Select(f => f + ":" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))));

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void OutputNeverOverwritesAnInputAndANonEmptyOutNeedsOverwrite()
    {
        using var dir = new TempDir();
        string teacher = dir.File("teacher"), converted = dir.File("converted");
        Assert.Equal(0, CliHarness.Run("import-llama2c", "--checkpoint", Path.Combine(SharedData.Stories260KDir, "stories260K.bin"),
            "--tokenizer", Path.Combine(SharedData.Stories260KDir, "tok512.bin"), "--out", teacher).Exit);
        string before = Snapshot(teacher);

        // --out equal to, inside, or containing the model: refused even with --overwrite, and the model is untouched.
        foreach (var target in new[] { teacher, Path.Combine(teacher, "sub"), dir.Path })
        {
            foreach (var command in new[]
                     {
                         new[] { "convert", "--model", teacher, "--method", "liger-gla", "--out", target, "--overwrite" },
                         new[] { "merge", "--model", teacher, "--adapter", dir.File("adapter"), "--out", target, "--overwrite" },
                     })
            {
                var (exit, _, err) = CliHarness.Run(command);
                Assert.Equal(1, exit);
                Assert.Contains("--out must not be, contain or be inside the input", err);
            }
        }

        Assert.Equal(before, Snapshot(teacher));

        // A non-empty --out is refused; --overwrite replaces its contents (foreign files do not survive).
        Directory.CreateDirectory(converted);
        File.WriteAllText(Path.Combine(converted, "foreign.txt"), "x");
        var (refused, _, refusedErr) = CliHarness.Run("convert", "--model", teacher, "--method", "liger-gla", "--out", converted);
        Assert.Equal(1, refused);
        Assert.Contains("is not empty", refusedErr);
        Assert.True(File.Exists(Path.Combine(converted, "foreign.txt")));
        Assert.Equal(0, CliHarness.Run("convert", "--model", teacher, "--method", "liger-gla", "--out", converted, "--overwrite").Exit);
        Assert.False(File.Exists(Path.Combine(converted, "foreign.txt")));
        Assert.True(File.Exists(Path.Combine(converted, "config.json")));
    }
}
