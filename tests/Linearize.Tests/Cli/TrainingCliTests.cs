using System.Text.Json;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>The training commands end to end on the real model, kept tiny (a few short steps).</summary>
[Collection("Torch")]
public sealed class TrainingCliTests
{
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void ConvertTrainResumeMergeAndPipeline()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), run = dir.File("run"), merged = dir.File("merged");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", converted).Exit);

        string[] train = { "train", "--model", converted, "--data", SharedData.TinyStoriesVal, "--skip-docs", "1000", "--seq-len", "128",
            "--grad-accum", "2", "--max-steps", "4", "--eval-every", "2", "--val-records", "20", "--out", run };
        var (exit, _, err) = CliHarness.Run(train);
        Assert.True(exit == 0, err);
        Assert.True(File.Exists(Path.Combine(run, "adapter", "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(run, "loss.png")));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);

        var again = CliHarness.Run(train); // refuses to overwrite a run without --resume
        Assert.Equal(1, again.Exit);
        Assert.Contains("pass --resume", again.Err);
        Assert.Equal(0, CliHarness.Run(train.Append("--resume").ToArray()).Exit); // already finished: resumes to the end at once

        (exit, _, err) = CliHarness.Run("merge", "--model", converted, "--adapter", Path.Combine(run, "adapter"), "--out", merged);
        Assert.True(exit == 0, err);
        var (genExit, text, _) = CliHarness.Run("generate", "--model", merged, "--prompt", "Once", "-n", "600"); // beyond 512: linear state
        Assert.Equal(0, genExit);
        Assert.StartsWith("Once", text);

        string pipe = dir.File("pipe");
        (exit, _, err) = CliHarness.Run("pipeline", "--model", SharedData.Stories260KDir, "--method", "swa", "--data", SharedData.TinyStoriesVal,
            "--skip-docs", "1000", "--seq-len", "128", "--grad-accum", "1", "--max-steps", "2", "--val-records", "10",
            "--eval-text", SharedData.TinyStoriesVal, "--eval-docs", "5", "--eval-tasks", "piqa,lambada_openai", "--eval-tasks-limit", "3", "--out", pipe);
        Assert.True(exit == 0, err);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(pipe, "report.json")));
        Assert.Equal(new[] { "teacher", "converted", "trained" },
            report.RootElement.GetProperty("stages").EnumerateArray().Select(s => s.GetProperty("name").GetString()).ToArray());
        Assert.True(File.Exists(Path.Combine(pipe, "report.md")));
        foreach (var stage in report.RootElement.GetProperty("stages").EnumerateArray())
            Assert.InRange(stage.GetProperty("tasks").GetProperty("piqa/acc").GetDouble(), 0, 1);
        Assert.Contains("| lambada_openai | perplexity |", File.ReadAllText(Path.Combine(pipe, "report.md")));
        // The report says what validation was used: the documents held out and the sequences they packed into.
        var validation = System.Text.RegularExpressions.Regex.Match(File.ReadAllText(Path.Combine(pipe, "report.md")),
            @"validation: 10 documents held out \((\d+) sequences? of 128 tokens\)");
        Assert.True(validation.Success, "report.md does not say which validation was used");
        Assert.True(File.Exists(Path.Combine(pipe, "merged", "config.json")));
    }

    [Fact]
    public void BadTrainingFlagsAreOneLineErrors()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("d.txt"), "hello\n");
        var (exit, _, err) = CliHarness.Run("train", "--model", "x", "--data", dir.File("d.txt"), "--targets", "q,zz", "--out", dir.File("o"));
        Assert.Equal(1, exit);
        Assert.Contains("--targets: unknown module 'zz'", err);
    }

    [Fact]
    public void ThreadsSetsLibtorchsThreadsAndRefusesZero()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        int before = TorchSharp.torch.get_num_threads();
        int wanted = before == 1 ? 2 : 1; // a value the run has to change
        try
        {
            var (exit, _, err) = CliHarness.Run("train", "--model", SampleData.Stories260KDir, "--data", SampleData.TinyStoriesExcerpt, "--skip-docs", "1000",
                "--seq-len", "32", "--grad-accum", "1", "--max-steps", "1", "--val-records", "2", "--threads", wanted.ToString(), "--out", run);
            Assert.True(exit == 0, err);
            Assert.Equal(wanted, TorchSharp.torch.get_num_threads());
        }
        finally
        {
            TorchSharp.torch.set_num_threads(before);
        }

        var refused = CliHarness.Run("train", "--model", SampleData.Stories260KDir, "--data", SampleData.TinyStoriesExcerpt, "--threads", "0", "--out", dir.File("o"));
        Assert.Equal(1, refused.Exit);
        Assert.Contains("--threads must be at least 1, got 0", refused.Err);
        Assert.False(Directory.Exists(dir.File("o")));
    }

    /// <summary><c>--checkpoint-activations</c> trains (reporting peak memory), and is refused beside LoRA dropout, whose
    /// masks the recomputation would redraw.</summary>
    [Fact]
    public void CheckpointActivationsTrainsAndRefusesDropout()
    {
        using var dir = new TempDir();
        var (exit, output, err) = CliHarness.Run("train", "--model", SampleData.Stories260KDir, "--data", SampleData.TinyStoriesExcerpt,
            "--skip-docs", "1000", "--seq-len", "32", "--grad-accum", "1", "--max-steps", "1", "--val-records", "2", "--checkpoint-activations",
            "--out", dir.File("run"));
        Assert.True(exit == 0, err);
        Assert.Matches(@"peak memory \d+\.\d\d GB", output);

        var refused = CliHarness.Run("train", "--model", SampleData.Stories260KDir, "--data", SampleData.TinyStoriesExcerpt, "--lora-dropout", "0.1",
            "--checkpoint-activations", "--out", dir.File("o"));
        Assert.Equal(1, refused.Exit);
        Assert.Contains("--checkpoint-activations recomputes each layer", refused.Err);
        Assert.False(Directory.Exists(dir.File("o")));
    }
}
