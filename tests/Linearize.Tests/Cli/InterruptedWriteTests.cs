using System.Diagnostics;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>
/// Issue 9 items 6 and 14: a run killed while it writes (simulated by <c>LINEARIZE_FAULT</c>, which dies like
/// <c>kill -9</c>: no finally blocks) never leaves a half-written model directory; what it does leave is hidden
/// beside or inside <c>--out</c>, and the next run removes it and says so.
/// </summary>
[Collection("Torch")]
public sealed class InterruptedWriteTests
{
    /// <summary>Runs the CLI in a child process with a crash armed at <paramref name="fault"/>.</summary>
    private static (int Exit, string Err) RunWithFault(string fault, params string[] args)
    {
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardError = true, RedirectStandardOutput = true,
        };
        info.Environment["LINEARIZE_FAULT"] = fault;
        info.ArgumentList.Add(typeof(Linearize.Cli.Program).Assembly.Location);
        foreach (var a in args)
            info.ArgumentList.Add(a);
        using var child = Process.Start(info)!;
        var err = child.StandardError.ReadToEndAsync();
        child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        return (child.ExitCode, err.Result);
    }

    private static string[] Leftovers(string parent) =>
        Directory.EnumerateFileSystemEntries(parent, "*", SearchOption.AllDirectories)
            .Where(p => Path.GetFileName(p).StartsWith('.') || p.Contains(".tmp-", StringComparison.Ordinal)).ToArray();

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void AConvertKilledAtAnyPointLeavesNoHalfModelAndTheNextRunCleansUp()
    {
        foreach (var fault in new[] { "staged-started", "safetensors-half-written", "staged-before-rename" })
        {
            using var dir = new TempDir();
            string output = dir.File("out");
            string[] args = { "convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", output };
            var (exit, err) = RunWithFault(fault, args);
            Assert.True(exit != 0, $"{fault}: the armed crash did not happen ({err})");
            Assert.False(Directory.Exists(output), $"{fault}: a half-written {output} exists");
            Assert.NotEmpty(Leftovers(dir.Path)); // the staging directory of the dead process

            var (exit2, _, err2) = CliHarness.Run(args);
            Assert.True(exit2 == 0, err2);
            Assert.Contains("removed", err2);
            Assert.Contains("interrupted run", err2);
            Assert.Empty(Leftovers(dir.Path));
            using var model = ModelLoader.Load(Linearize.Modeling.ModelSource.Resolve(output, null));
            Assert.Equal(5, model.Config.NumHiddenLayers);
        }
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void AnOverwriteKilledAtAnyPointKeepsTheCompleteEarlierModel()
    {
        foreach (var fault in new[] { "staged-started", "safetensors-half-written", "staged-before-rename" })
        {
            using var dir = new TempDir();
            string output = dir.File("out");
            var (exit, _, err) = CliHarness.Run("import-llama2c", "--checkpoint", SharedData.Stories260KBin, "--tokenizer", SharedData.Tok512, "--out", output);
            Assert.True(exit == 0, err);
            string before = Snapshot(output);
            (exit, err) = RunWithFault(fault, "convert", "--model", SharedData.Stories260KDir, "--method", "swa", "--out", output, "--overwrite");
            Assert.True(exit != 0, $"{fault}: the armed crash did not happen ({err})");
            Assert.Equal(before, Snapshot(output)); // the earlier model, whole: nothing of the new one mixed in
        }

        // Killed between moving the earlier model aside and moving the new one in: --out is absent, and the next run
        // puts the earlier model back (then refuses to replace it without --overwrite, as always).
        using var d2 = new TempDir();
        string out2 = d2.File("out");
        var (e1, _, er1) = CliHarness.Run("import-llama2c", "--checkpoint", SharedData.Stories260KBin, "--tokenizer", SharedData.Tok512, "--out", out2);
        Assert.True(e1 == 0, er1);
        string earlier = Snapshot(out2);
        var (e2, er2) = RunWithFault("staged-old-moved-aside", "convert", "--model", SharedData.Stories260KDir, "--method", "swa", "--out", out2, "--overwrite");
        Assert.True(e2 != 0, er2);
        Assert.False(Directory.Exists(out2));
        var (e3, _, er3) = CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "swa", "--out", out2);
        Assert.Equal(1, e3);
        Assert.Contains("restored", er3);
        Assert.Contains("is not empty", er3);
        Assert.Equal(earlier, Snapshot(out2));
    }

    private static string Snapshot(string dir) =>
        string.Join("|", Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order()
            .Select(f => Path.GetFileName(f) + ":" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))));

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void APipelineKilledWhileWritingItsConvertedModelRerunsCleanly()
    {
        using var dir = new TempDir();
        string pipe = dir.File("pipe");
        string[] args =
        {
            "pipeline", "--model", SharedData.Stories260KDir, "--method", "swa", "--data", SharedData.TinyStoriesVal, "--skip-docs", "1000",
            "--seq-len", "64", "--grad-accum", "1", "--max-steps", "1", "--val-records", "4", "--eval-text", SharedData.TinyStoriesVal,
            "--eval-docs", "2", "--out", pipe,
        };
        var (exit, err) = RunWithFault("safetensors-half-written", args);
        Assert.True(exit != 0, err);
        Assert.False(Directory.Exists(Path.Combine(pipe, "converted")), "a half-written converted/ exists");
        Assert.NotEmpty(Leftovers(dir.Path));

        var (exit2, _, err2) = CliHarness.Run(args);
        Assert.True(exit2 == 0, err2);
        Assert.Contains("interrupted run", err2);
        Assert.Empty(Leftovers(dir.Path));
        Assert.True(File.Exists(Path.Combine(pipe, "merged", "model.safetensors")));
    }
}
