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

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void TrainFollowsTheOutRuleAndResumeStillReusesItsRun()
    {
        using var dir = new TempDir();
        string teacher = dir.File("teacher"), run = dir.File("run"), full = dir.File("full");
        Assert.Equal(0, CliHarness.Run("import-llama2c", "--checkpoint", Path.Combine(SharedData.Stories260KDir, "stories260K.bin"),
            "--tokenizer", Path.Combine(SharedData.Stories260KDir, "tok512.bin"), "--out", teacher).Exit);
        string before = Snapshot(teacher);
        string[] Train(string model, string output, params string[] extra) => new[]
        {
            "train", "--model", model, "--data", SharedData.TinyStoriesVal, "--seq-len", "64", "--grad-accum", "1", "--max-steps", "1",
            "--val-records", "0", "--out", output,
        }.Concat(extra).ToArray();

        // --out equal to, inside, or containing the model (or the data) is refused even with --overwrite or --resume.
        foreach (var target in new[] { teacher, Path.Combine(teacher, "run"), dir.Path })
            foreach (var extra in new[] { Array.Empty<string>(), new[] { "--overwrite" }, new[] { "--resume" } })
            {
                var (exit, _, err) = CliHarness.Run(Train(teacher, target, extra));
                Assert.Equal(1, exit);
                Assert.Contains("--out must not be, contain or be inside the input", err);
            }

        Assert.Equal(before, Snapshot(teacher));

        // A non-empty --out that is no run is refused; --overwrite replaces it.
        Directory.CreateDirectory(full);
        File.WriteAllText(Path.Combine(full, "foreign.txt"), "x");
        var refused = CliHarness.Run(Train(teacher, full));
        Assert.Equal(1, refused.Exit);
        Assert.Contains("is not empty", refused.Err);
        Assert.True(File.Exists(Path.Combine(full, "foreign.txt")));
        var replaced = CliHarness.Run(Train(teacher, full, "--overwrite"));
        Assert.True(replaced.Exit == 0, replaced.Err);
        Assert.StartsWith("done: 1 step, ", replaced.Out); // the result on stdout, its count in the right number
        Assert.DoesNotContain("done:", replaced.Err);
        Assert.False(File.Exists(Path.Combine(full, "foreign.txt")));

        // A run's own --out is reused by --resume (and only by it).
        Assert.Equal(0, CliHarness.Run(Train(teacher, run)).Exit);
        var again = CliHarness.Run(Train(teacher, run));
        Assert.Equal(1, again.Exit);
        Assert.Contains("pass --resume", again.Err);
        var resumed = CliHarness.Run(Train(teacher, run, "--resume"));
        Assert.True(resumed.Exit == 0, resumed.Err);
    }

    [SharedFact("models/stories260K/stories260K.bin")]
    public void DemoScriptRefusesANonEmptyDirectoryWithoutOverwrite()
    {
        string? repo = null;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && repo is null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "demo.sh")))
                repo = d.FullName;
        Assert.NotNull(repo);
        using var dir = new TempDir();
        File.WriteAllText(dir.File("keep.txt"), "mine");
        var start = new System.Diagnostics.ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        start.ArgumentList.Add(Path.Combine(repo!, "demo.sh"));
        start.ArgumentList.Add(dir.Path);
        start.Environment["LINEARIZE_SHARED"] = SharedData.Root;
        using var process = System.Diagnostics.Process.Start(start)!;
        string err = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "demo.sh went on instead of refusing");
        Assert.Equal(1, process.ExitCode);
        Assert.Contains($"{dir.Path}: is not empty", err);
        Assert.Equal("mine", File.ReadAllText(dir.File("keep.txt")));
    }

    [Theory]
    [InlineData("convert --model m --methd liger-gla --out o", "Unrecognized command or argument '--methd'", "linearize convert --help")]
    [InlineData("convert --model m --method zz --out o", "Argument 'zz' not recognized", "linearize convert --help")]
    [InlineData("eval ppl --model m --text", "Required argument missing for option: '--text'", "linearize eval ppl --help")]
    [InlineData("bogus", "Unrecognized command or argument 'bogus'", "linearize --help")]
    public void UsageErrorsAreOneLinePlusAHintAndExitTwo(string args, string message, string hint)
    {
        // Issue 9 item 7: no screenful of help; the error and one hint line; 2 for usage errors, 1 for runtime errors.
        var (exit, output, err) = CliHarness.Run(args.Split(' '));
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        var lines = err.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(message, lines[0]);
        Assert.Equal($"see '{hint}'", lines[1].Trim());
    }

    [Theory]
    [InlineData("liger-gla", "--slots 4", "--slots applies to liger-gsa, not liger-gla")]
    [InlineData("liger-gla", "--sinks 2", "--sinks applies to swa, not liger-gla")]
    [InlineData("swa", "--mix-alpha 0.7", "--mix-alpha applies to liger-gla, liger-hgrn2, liger-gsa, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, liger-deltanet, not swa")]
    [InlineData("lolcats-sw", "--normalize-recurrent", "--normalize-recurrent applies to liger-gla, liger-hgrn2, liger-gsa, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, liger-deltanet, not lolcats-sw")]
    [InlineData("liger-gla", "--feature-map t2r", "--feature-map applies to lolcats-sw, lolcats-tk, not liger-gla")]
    [InlineData("swa", "--window-factor 0.2", "--window-factor applies to lolcats-sw, lolcats-tk, not swa")]
    [InlineData("liger-hgrn2", "--gate learned", "--gate applies to liger-gla, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, not liger-hgrn2")]
    [InlineData("lolcats-sw", "--gate-bias 2", "--gate-bias applies to liger-gla, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, not lolcats-sw")]
    [InlineData("liger-gsa", "--output-norm rmsnorm", "--output-norm applies to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm, liger-retention, not liger-gsa")]
    [InlineData("liger-deltanet", "--output-norm rmsnorm", "--output-norm applies to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm, liger-retention, not liger-deltanet")]
    [InlineData("liger-gla", "--gate-bias 2", "--gate-bias sets the learned gate's start: add --gate learned")]
    [InlineData("liger-gla", "--output-norm rmsnorm --normalize-recurrent", "--output-norm rmsnorm replaces --normalize-recurrent's denominator")]
    public void OptionsThatDoNothingForTheMethodAreRefused(string method, string option, string message)
    {
        // Issue 9 item 9: every method-specific option is validated the same way (checked before the model is read).
        var (exit, _, err) = CliHarness.Run(new[] { "convert", "--model", "missing-model", "--method", method, "--out", "o" }
            .Concat(option.Split(' ')).ToArray());
        Assert.Equal(1, exit);
        Assert.Contains(message, err);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void TrainingOnDataShorterThanOneSequenceSuggestsSeqLenAndLeavesNoOutput()
    {
        // Issue 9 item 13.
        using var dir = new TempDir();
        string data = dir.File("short.txt"), run = dir.File("run");
        File.WriteAllText(data, "Once upon a time there was a cat.\nThe cat sat.\n");
        var (exit, _, err) = CliHarness.Run("train", "--model", SharedData.Stories260KDir, "--data", data, "--val-records", "0", "--out", run);
        Assert.Equal(1, exit);
        Assert.Contains("give a smaller --seq-len", err);
        Assert.False(Directory.Exists(run), "nothing may be left in --out");
    }

    [Fact]
    public void JsonErrorsGiveOneBasedLineAndColumnOnOneLine()
    {
        // Issue 9 item 8: no raw .NET text ("LineNumber: 0 | BytePositionInLine …") contradicting the prefix.
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), "{\n  \"hidden_size\": 64,\n  \"x\": tru\n}\n");
        var (exit, _, err) = CliHarness.Run("inspect", "--model", dir.Path);
        Assert.Equal(1, exit);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("config.json: not valid JSON (line 3, column 11: ", err);
        Assert.DoesNotContain("LineNumber", err);
        Assert.DoesNotContain("BytePositionInLine", err);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void ContextLimitsAreOneRuleAcrossCommands()
    {
        // Issue 9 item 5: a softmax model refuses to read past its 512 positions in eval ppl as in generate; a linear
        // model may, with a note that quality there is unmeasured.
        using var dir = new TempDir();
        var (exit, output, err) = CliHarness.Run("eval", "ppl", "--model", SharedData.Stories260KDir, "--text", SharedData.TinyStoriesVal,
            "--max-docs", "50", "--rolling", "--max-length", "4096");
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.Contains("--max-length = 4096 exceeds the model's context of 512 positions", err);

        string swa = dir.File("swa");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "swa", "--out", swa).Exit);
        (exit, output, err) = CliHarness.Run("eval", "ppl", "--model", swa, "--text", SharedData.TinyStoriesVal, "--max-docs", "50",
            "--rolling", "--max-length", "1024", "--json");
        Assert.True(exit == 0, err);
        Assert.Contains("note: --max-length = 1024 goes beyond the teacher's 512 positions", err);
        Assert.Contains("\"max_length\":1024", output);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void BenchDecodeAndChatFollowTheContextRule()
    {
        // bench decode: a softmax model past its 512 positions is refused (naming --contexts) unless --beyond-context.
        var (exit, output, err) = CliHarness.Run("bench", "decode", "--model", SharedData.Stories260KDir, "--contexts", "256,4096", "--no-bandwidth");
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("--contexts 4096 + ", err);
        Assert.Contains("exceeds the context of 512 positions", err);
        (exit, output, err) = CliHarness.Run("bench", "decode", "--model", SharedData.Stories260KDir, "--contexts", "600", "--new-tokens", "2",
            "--no-bandwidth", "--beyond-context", "--json");
        Assert.True(exit == 0, err);
        Assert.Contains("--beyond-context", err);
        Assert.Contains("\"context\":600", output);

        // chat: a linear model passing 512 positions says what generate and eval ppl say.
        using var dir = new TempDir();
        string swa = dir.File("swa");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "swa", "--out", swa).Exit);
        string longMessage = string.Join(" ", Enumerable.Repeat("The little dog ran to the park and played with a red ball.", 60));
        var oldIn = Console.In;
        Console.SetIn(new StringReader(longMessage + "\n/exit\n"));
        try
        {
            (exit, _, err) = CliHarness.Run("chat", "--model", swa, "--max-new-tokens", "3", "--temperature", "0");
        }
        finally
        {
            Console.SetIn(oldIn);
        }

        Assert.True(exit == 0, err);
        Assert.Contains("goes beyond the teacher's 512 positions; this linear model has no hard limit", err);
    }

    [Fact]
    public void TheReadmeTourRunsInOrder()
    {
        // Every /tmp path a tour command reads (--model, --adapter, --data, --vs) was written by an earlier --out.
        string? repo = null;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && repo is null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Linearize.slnx")))
                repo = d.FullName;
        string readme = File.ReadAllText(Path.Combine(repo!, "README.md"));
        int start = readme.IndexOf("```bash", readme.IndexOf("## A tour of the CLI", StringComparison.Ordinal), StringComparison.Ordinal);
        string tour = readme[start..readme.IndexOf("```", start + 7, StringComparison.Ordinal)];
        var written = new List<string>();
        int checkedReads = 0;
        foreach (string line in tour.Split('\n').Select(l => l.Split('#')[0]))
            foreach (string command in line.Split(';'))
            {
                var words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                for (int i = 0; i + 1 < words.Length; i++)
                {
                    string value = words[i + 1];
                    if (!value.StartsWith("/tmp/", StringComparison.Ordinal) || words[i] is not ("--model" or "--adapter" or "--data" or "--vs"))
                        continue;
                    checkedReads++;
                    Assert.True(written.Any(w => value == w || value.StartsWith(w + "/", StringComparison.Ordinal)),
                        $"the tour reads {value} before any step writes it: {command.Trim()}");
                }

                for (int i = 0; i + 1 < words.Length; i++)
                    if (words[i] == "--out")
                        written.Add(words[i + 1]);
            }

        Assert.True(checkedReads > 10, $"only {checkedReads} reads found: the tour's format changed");
    }

    [SharedFact("data")]
    public void EvalTasksFindsTheSharedDataFromTheExecutableWhereverItRuns()
    {
        // Not ../shared/data of the current directory: run from elsewhere, without LINEARIZE_SHARED, it is still found.
        using var dir = new TempDir();
        string? env = Environment.GetEnvironmentVariable("LINEARIZE_SHARED");
        string cwd = Directory.GetCurrentDirectory();
        try
        {
            Environment.SetEnvironmentVariable("LINEARIZE_SHARED", null);
            Directory.SetCurrentDirectory(dir.Path);
            // Only a ../shared beside the repository can be found without the variable (a clone elsewhere, given the
            // material through LINEARIZE_SHARED alone, has none to find).
            if (Linearize.Cli.SharedFolder.Find() is not string besideRepository)
                return;
            Assert.Equal(Path.Combine(besideRepository, "data"), Path.GetFullPath(Linearize.Cli.Commands.EvalTasksCommand.DefaultDataDirectory()));
            Assert.NotEqual(Path.GetFullPath(Path.Combine("..", "shared", "data")), Path.GetFullPath(Linearize.Cli.Commands.EvalTasksCommand.DefaultDataDirectory()));
        }
        finally
        {
            Directory.SetCurrentDirectory(cwd);
            Environment.SetEnvironmentVariable("LINEARIZE_SHARED", env);
        }
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void PerplexityOfBinaryBytesWarnsThatTheTextIsNotUtf8()
    {
        using var dir = new TempDir();
        string binary = dir.File("data.bin");
        File.WriteAllBytes(binary, new byte[] { (byte)'O', (byte)'k', 0xC3, 0x28, (byte)'\n', 0xFF, 0xFE, (byte)'x', (byte)'\n' });
        var (exit, _, err) = CliHarness.Run("eval", "ppl", "--model", SharedData.Stories260KDir, "--text", binary);
        Assert.Equal(0, exit);
        Assert.Contains($"warning: {binary} is not valid UTF-8 (first bad byte at offset 2)", err);
        string clean = dir.File("clean.txt");
        File.WriteAllText(clean, "Once upon a time — a café.\n");
        (exit, _, err) = CliHarness.Run("eval", "ppl", "--model", SharedData.Stories260KDir, "--text", clean);
        Assert.Equal(0, exit);
        Assert.DoesNotContain("UTF-8", err);
    }

    [Fact]
    public void InspectListsLayersAsRangesThatWrapOnlyAtSpaces()
    {
        Assert.Equal("0–11", Linearize.Cli.Commands.InspectCommand.LayerRanges(Enumerable.Range(0, 12)));
        Assert.Equal("0–2, 4, 6, 7, 9–11", Linearize.Cli.Commands.InspectCommand.LayerRanges(new[] { 11, 0, 1, 2, 4, 6, 7, 9, 10 }));
    }

    [Fact]
    public void TheLossPlotDrawsValidationPointsInTheirOwnColourOnTop()
    {
        using var dir = new TempDir();
        string png = dir.File("loss.png");
        var steps = Enumerable.Range(1, 200).Select(i => (double)i).ToArray();
        var train = steps.Select(s => 3.0 / Math.Sqrt(s)).ToArray();
        // Validation sits exactly on the training curve: only markers drawn on top can show it.
        var evalSteps = new double[] { 50, 100, 150, 200 };
        Linearize.Cli.Plots.Line(png, "t", "step", "loss", new[]
        {
            new Linearize.Cli.Plots.Series("validation loss", evalSteps, evalSteps.Select(s => 3.0 / Math.Sqrt(s)).ToArray(), Markers: true),
            new Linearize.Cli.Plots.Series("train loss", steps, train),
        });
        using var bitmap = SkiaSharp.SKBitmap.Decode(png);
        var orangeRed = ScottPlot.Colors.OrangeRed;
        int marked = 0;
        for (int y = 0; y < bitmap.Height; y++)
            for (int x = 0; x < bitmap.Width; x++)
            {
                var c = bitmap.GetPixel(x, y);
                if (c.Red == orangeRed.R && c.Green == orangeRed.G && c.Blue == orangeRed.B)
                    marked++;
            }

        Assert.True(marked > 4 * 40, $"only {marked} validation-coloured pixels: the markers are hidden or missing");
    }
}
