using System.Diagnostics;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>What commands print and draw: results on stdout, counts in the right number, readable deltas and plots,
/// a chat that ends cleanly, and no output left by a run that failed.</summary>
[Collection("Torch")]
public sealed class ReportAndOutputTests
{
    [Fact]
    public void CountsArePluralizedProperly()
    {
        Assert.Equal("1 record", Plural.Of(1, "record"));
        Assert.Equal("0 records", Plural.Of(0, "record"));
        Assert.Equal("14 sequences", Plural.Of(14, "sequence"));
        Assert.Equal("1,234 requests", Plural.Of(1234, "request", "N0"));
        var result = new Linearize.Evaluation.Recall.RecallResult(1, 1, 1, Array.Empty<Linearize.Evaluation.Recall.RecallBucket>());
        Assert.Equal("m: 1 answer in 1 sequence", Linearize.Cli.Commands.EvalRecallCommand.Heading("m", result));
    }

    [Fact]
    public void PerplexityDeltasAreRatiosAndAccuracyDeltasDifferences()
    {
        Assert.Equal("+0.2500", Linearize.Cli.Commands.EvalTasksCommand.Delta("acc", 0.5, 0.75));
        Assert.Equal("-0.1000", Linearize.Cli.Commands.EvalTasksCommand.Delta("acc_norm", 0.5, 0.4));
        Assert.Equal("×1.10e+11", Linearize.Cli.Commands.EvalTasksCommand.Delta("perplexity", 10, 1.1e12));
        Assert.Equal("×1.500", Linearize.Cli.Commands.EvalTasksCommand.Delta("perplexity", 20, 30));
        Assert.Equal("×0.500", Linearize.Cli.Commands.EvalTasksCommand.Delta("perplexity", 20, 10));
    }

    [Fact]
    public void TwoAxisPlotsColourAnAxisTitleOnlyWhenOneLineIsDrawnAgainstIt()
    {
        double[] xs = { 256, 1024, 4096 }, ys = { 1, 2, 3 };
        Linearize.Cli.Plots.Series[] Model(string name) =>
        [
            new($"{name}: ms per token", xs, ys),
            new($"{name}: state (MiB)", xs, ys, RightAxis: true),
        ];
        var one = Linearize.Cli.Plots.Build("t", "context", "ms", Model("a"), logX: true, rightYLabel: "MiB");
        var lines = one.GetPlottables<ScottPlot.Plottables.Scatter>().ToList();
        Assert.Equal(lines[0].Color, one.Axes.Left.Label.ForeColor);
        Assert.Equal(lines[1].Color, one.Axes.Right.Label.ForeColor);

        var two = Linearize.Cli.Plots.Build("t", "context", "ms", Model("a").Concat(Model("b")).ToList(), logX: true, rightYLabel: "MiB");
        var colours = two.GetPlottables<ScottPlot.Plottables.Scatter>().Select(s => s.Color).ToHashSet();
        Assert.DoesNotContain(two.Axes.Left.Label.ForeColor, colours);
        Assert.DoesNotContain(two.Axes.Right.Label.ForeColor, colours);
    }

    [Fact]
    public void EveryModelsMarkedLineHasItsOwnColour()
    {
        double[] xs = { 512, 4096 };
        var plot = Linearize.Cli.Plots.Build("prefill", "prompt tokens", "tok/s",
            new[] { "teacher", "liger-gla", "lolcats" }.Select((m, i) => new Linearize.Cli.Plots.Series(m, xs, new double[] { i, i + 1 }, Markers: true)).ToList(),
            logX: true);
        Assert.Equal(3, plot.GetPlottables<ScottPlot.Plottables.Scatter>().Select(s => s.Color).Distinct().Count());
    }

    [Fact]
    public void AShortRunsLossPlotHasWholeStepTicks()
    {
        var plot = Linearize.Cli.Plots.Build("loss", "optimizer step", "loss",
            new[] { new Linearize.Cli.Plots.Series("train loss", new double[] { 1, 2, 3 }, new double[] { 3, 2.5, 2.2 }) }, integerX: true);
        plot.GetImage(800, 500).Dispose();
        var ticks = plot.Axes.Bottom.TickGenerator.Ticks.Where(t => t.IsMajor && t.Position is >= 1 and <= 3).ToList();
        Assert.NotEmpty(ticks);
        Assert.All(ticks, t => Assert.Equal(Math.Round(t.Position), t.Position));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void ConvertPrintsItsResultOnStdout()
    {
        using var dir = new TempDir();
        var (exit, output, err) = CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", dir.File("gla"));
        Assert.True(exit == 0, err);
        Assert.StartsWith($"wrote {dir.File("gla")}: ", output);
        Assert.DoesNotContain("wrote", err);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void ChatEndsItsPromptLineOnEndOfInput()
    {
        var oldIn = Console.In;
        Console.SetIn(new StringReader(""));
        try
        {
            var (exit, output, err) = CliHarness.Run("chat", "--model", SharedData.Stories260KDir);
            Assert.True(exit == 0, err);
            Assert.EndsWith("> " + Environment.NewLine, output);
        }
        finally
        {
            Console.SetIn(oldIn);
        }
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void CtrlCAtAnIdleChatPromptSaysSoAndExits130()
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "Linearize.Cli.dll");
        // Through env --default-signal: a test run started in the background ignores SIGINT, and chat would inherit it.
        var start = new ProcessStartInfo("/usr/bin/env") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--default-signal=INT", "dotnet", cli, "chat", "--model", SharedData.Stories260KDir })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        // Wait for the prompt, then interrupt as a terminal's Ctrl-C does.
        var seen = new System.Text.StringBuilder();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var buffer = new char[1];
        while (!seen.ToString().Contains("> ") && DateTime.UtcNow < deadline && process.StandardOutput.Read(buffer, 0, 1) == 1)
            seen.Append(buffer[0]);
        Assert.Contains("> ", seen.ToString());
        Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        Assert.True(process.WaitForExit(30_000), "chat did not exit on Ctrl-C");
        Assert.Equal(130, process.ExitCode);
        Assert.Contains("interrupted", stderr.Result);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void DistillOnEmptyDataLeavesNoOut()
    {
        using var dir = new TempDir();
        string lolcats = dir.File("lolcats"), empty = dir.File("empty.txt"), run = dir.File("distill");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "lolcats-sw", "--out", lolcats).Exit);
        File.WriteAllText(empty, "");
        var (exit, _, err) = CliHarness.Run("distill", "--model", lolcats, "--data", empty, "--out", run);
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", err.Trim().Split('\n')[^1]);
        Assert.False(Directory.Exists(run), "a failed distill left its --out behind");
    }
}
