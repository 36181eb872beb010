using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Cli;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>
/// SIGINT and SIGTERM stop training at a step boundary with a checkpoint that <c>--resume</c> continues from, and
/// the shell's exit code for the signal; a parent of block processes passes the signal on and waits for them to save.
/// Each run is the real CLI in a child process, signalled as a terminal or a scheduler would signal it.
/// </summary>
[Collection("Torch")]
public sealed class SignalTests
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90), StopTimeout = TimeSpan.FromSeconds(60); // only a failure waits this long; a loaded machine is slow

    /// <summary>Options shared by both runs of a command: steps enough never to finish, and no evaluation (so the only
    /// checkpoint is the one the signal makes).</summary>
    private static readonly string[] Training =
        { "--seq-len", "64", "--grad-accum", "1", "--max-steps", "100000", "--eval-every", "100000", "--val-records", "2" };

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void TrainStoppedBySigtermSavesACheckpointExits143AndResumeContinuesFromIt()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), run = dir.File("run"), text = Text(dir);
        var (exit, _, err) = CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", converted);
        Assert.True(exit == 0, err);
        string[] train = new[] { "train", "--model", converted, "--data", text }.Concat(Training).Concat(new[] { "--out", run }).ToArray();
        string metrics = Path.Combine(run, "metrics.jsonl"), checkpoint = Path.Combine(run, "checkpoints", "last.safetensors");

        var first = Child.Start(train);
        first.WaitFor(() => Lines(metrics) >= 1, "a first training step");
        var (code, log) = first.Stop(PosixSignals.SigTerm);
        Assert.True(code == 143, $"exit {code}, expected 143 for SIGTERM:\n{log}");
        Assert.Contains("SIGTERM: saving a checkpoint", log);
        long saved = Step(checkpoint);
        Assert.True(saved > 0, log);
        Assert.Equal(Enumerable.Range(1, (int)saved).Select(s => (long)s), Steps(metrics));
        Mark(metrics);

        var second = Child.Start(train.Append("--resume").ToArray());
        second.WaitFor(() => Lines(metrics) > saved, $"a step after {saved}");
        (code, log) = second.Stop(PosixSignals.SigTerm);
        Assert.True(code == 143, $"exit {code}, expected 143 for SIGTERM:\n{log}");
        long resumed = Step(checkpoint);
        Assert.True(resumed > saved, $"checkpoint at step {resumed}, not past {saved}");
        Assert.Equal(Enumerable.Range(1, (int)resumed).Select(s => (long)s), Steps(metrics));
        Assert.True(Marked(metrics), "metrics.jsonl was started afresh: the run restarted instead of resuming");
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void DistillJobsStoppedByCtrlCPassesItToItsBlocksWhichSaveAndResume()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), run = dir.File("run"), text = Text(dir);
        var (exit, _, err) = CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "lolcats-sw", "--out", converted);
        Assert.True(exit == 0, err);
        string[] distill = new[] { "distill", "--model", converted, "--data", text, "--text-split", "stream" }.Concat(Training)
            .Concat(new[] { "--block-size", "2", "--jobs", "2", "--out", run }).ToArray();
        string Block(int b, params string[] path) => Path.Combine(new[] { run, "blocks", $"block-{b}" }.Concat(path).ToArray());

        var first = Child.Start(distill);
        first.WaitFor(() => Lines(Block(0, "metrics.jsonl")) >= 1 && Lines(Block(1, "metrics.jsonl")) >= 1, "a first step in blocks 0 and 1");
        var (code, log) = first.Stop(PosixSignals.SigInt);
        Assert.True(code == 130, $"exit {code}, expected 130 for SIGINT:\n{log}");
        Assert.Contains("passing the signal on to 2 block processes", log);
        var saved = new long[2];
        for (int b = 0; b < 2; b++)
        {
            string blockLog = File.ReadAllText(Block(b, "log.txt"));
            Assert.Contains($"block {b}: stopped (exit 130)", log);
            Assert.Contains("interrupted at step", blockLog); // it saved and exited by itself, not killed
            Assert.True(new FileInfo(Block(b, "checkpoints", "last.safetensors")).Length > 0, blockLog);
            saved[b] = Step(Block(b, "checkpoints", "last.safetensors"));
            Assert.True(saved[b] > 0, blockLog);
        }

        Assert.False(Directory.Exists(Block(2)), "block 2 was started after the interrupt");
        Mark(Block(0, "metrics.jsonl"));

        var second = Child.Start(distill.Append("--resume").ToArray());
        second.WaitFor(() => Lines(Block(0, "metrics.jsonl")) > saved[0], $"a step after {saved[0]} in block 0");
        (code, log) = second.Stop(PosixSignals.SigInt);
        Assert.True(code == 130, $"exit {code}, expected 130 for SIGINT:\n{log}");
        long resumed = Step(Block(0, "checkpoints", "last.safetensors"));
        Assert.True(resumed > saved[0], $"block 0 checkpoint at step {resumed}, not past {saved[0]}");
        Assert.Equal(Enumerable.Range(1, (int)resumed).Select(s => (long)s), Steps(Block(0, "metrics.jsonl")));
        Assert.True(Marked(Block(0, "metrics.jsonl")), "block 0 started afresh instead of resuming");
    }

    /// <summary>Ctrl-C in a terminal reaches a block process twice (from the terminal, and passed on by its parent);
    /// that must not count as "Ctrl-C again to kill".</summary>
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void ASupervisedProcessCountsOnlyTheFirstSignal()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), run = dir.File("run");
        var (exit, _, err) = CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", converted);
        Assert.True(exit == 0, err);
        var child = Child.Start(new[] { "train", "--model", converted, "--data", Text(dir) }.Concat(Training).Concat(new[] { "--out", run }).ToArray(),
            supervised: true);
        child.WaitFor(() => Lines(Path.Combine(run, "metrics.jsonl")) >= 1, "a first training step");
        // The second only once the first has been handled: two pending signals of one kind are delivered as one.
        child.Signal(PosixSignals.SigInt);
        child.WaitFor(() => child.Err.Contains("interrupt: saving a checkpoint"), "the first signal handled");
        var (code, log) = child.Stop(PosixSignals.SigInt);
        Assert.True(code == 130, $"exit {code}, expected 130:\n{log}");
        Assert.Contains("interrupted at step", log); // saved and stopped, not killed by the second signal
        Assert.True(Step(Path.Combine(run, "checkpoints", "last.safetensors")) > 0, log);
    }

    [Fact]
    public void StopPassesTheSignalOnAndKillsWhatOutlivesTheGrace()
    {
        using var obeys = Shell("echo ready; exec sleep 60");
        using var ignores = Shell("trap '' TERM; echo ready; exec sleep 60");
        var watch = Stopwatch.StartNew();
        var killed = BlockProcesses.Stop(new[] { obeys, ignores }, PosixSignals.SigTerm, TimeSpan.FromSeconds(1));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"took {watch.Elapsed}");
        Assert.Equal(new[] { ignores }, killed);
        Assert.True(obeys.WaitForExit(10_000) && ignores.WaitForExit(10_000));
        Assert.Equal(143, obeys.ExitCode); // stopped by the signal itself
        Assert.Equal(137, ignores.ExitCode); // SIGKILL
    }

    /// <summary>A shell running <paramref name="script"/>, returned once it has said "ready" (its trap is set).</summary>
    private static Process Shell(string script)
    {
        var p = Process.Start(new ProcessStartInfo("/bin/sh", new[] { "-c", script }) { RedirectStandardOutput = true })!;
        Assert.Equal("ready", p.StandardOutput.ReadLine());
        return p;
    }

    /// <summary>A few hundred lines of training text: enough for many steps, quick to prepare.</summary>
    private static string Text(TempDir dir)
    {
        string text = dir.File("train.txt");
        File.WriteAllLines(text, File.ReadLines(SharedData.TinyStoriesVal).Skip(1000).Take(300));
        return text;
    }

    private static int Lines(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllLines(path).Count(l => l.Length > 0) : 0;
        }
        catch (IOException)
        {
            return 0; // being replaced
        }
    }

    private static long[] Steps(string metrics) =>
        File.ReadAllLines(metrics).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<long>()).ToArray();

    private static long Step(string checkpoint)
    {
        using var file = SafetensorsFile.Open(checkpoint);
        return JsonNode.Parse(file.Metadata["training_state"])!["step"]!.GetValue<long>();
    }

    /// <summary>Adds a field to the first metrics line. A resumed run keeps the lines of the steps it does not redo
    /// as they are; a run started afresh deletes the file, and the mark with it.</summary>
    private static void Mark(string metrics)
    {
        var lines = File.ReadAllLines(metrics);
        var first = JsonNode.Parse(lines[0])!.AsObject();
        first["kept"] = true;
        lines[0] = first.ToJsonString();
        File.WriteAllLines(metrics, lines);
    }

    private static bool Marked(string metrics) => JsonNode.Parse(File.ReadLines(metrics).First())!["kept"] is not null;

    /// <summary>The CLI in a child process, its stderr collected.</summary>
    private sealed class Child
    {
        private readonly Process _process;
        private readonly StringBuilder _err = new();

        private Child(Process process) => _process = process;

        /// <param name="supervised">Started as <see cref="BlockProcesses"/> starts a block.</param>
        public static Child Start(string[] args, bool supervised = false)
        {
            // Through env --default-signal: a test run started in the background (a script's '&', some CI runners)
            // ignores SIGINT, and a child would inherit that and never see the Ctrl-C the test sends.
            var info = new ProcessStartInfo("/usr/bin/env") { RedirectStandardError = true, RedirectStandardOutput = true };
            info.ArgumentList.Add("--default-signal=INT");
            info.ArgumentList.Add(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet");
            if (supervised)
                info.Environment[Interruption.SupervisedVariable] = "1";
            info.ArgumentList.Add(typeof(Linearize.Cli.Program).Assembly.Location);
            foreach (var a in args)
                info.ArgumentList.Add(a);
            var child = new Child(Process.Start(info)!);
            child._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (child._err) child._err.AppendLine(e.Data); };
            child._process.OutputDataReceived += (_, _) => { };
            child._process.BeginErrorReadLine();
            child._process.BeginOutputReadLine();
            return child;
        }

        public string Err { get { lock (_err) return _err.ToString(); } }

        public void WaitFor(Func<bool> condition, string what)
        {
            var deadline = DateTime.UtcNow + StartTimeout;
            while (!condition())
            {
                if (_process.HasExited || DateTime.UtcNow > deadline)
                {
                    KillTree();
                    Assert.Fail($"no {what} within {StartTimeout.TotalSeconds:F0} s (exited: {_process.HasExited}):\n{Err}");
                }

                Thread.Sleep(10);
            }
        }

        public void Signal(int signal) => Assert.True(PosixSignals.Send(_process.Id, signal), "the process was already gone");

        /// <summary>Sends <paramref name="signal"/> and waits for the exit; returns the exit code and stderr.</summary>
        public (int Exit, string Err) Stop(int signal)
        {
            Signal(signal);
            if (!_process.WaitForExit(StopTimeout))
            {
                KillTree();
                Assert.Fail($"still running {StopTimeout.TotalSeconds:F0} s after signal {signal}:\n{Err}");
            }

            _process.WaitForExit(); // the redirected streams to their end
            int code = _process.ExitCode;
            _process.Dispose();
            return (code, Err);
        }

        private void KillTree()
        {
            try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        }
    }
}
