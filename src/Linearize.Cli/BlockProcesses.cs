using System.Diagnostics;
using Linearize.Training.Distillation;
using Linearize.Workflows;

namespace Linearize.Cli;

/// <summary>
/// Runs blocks of a block-wise attention transfer as child processes of this executable (<c>distill … --block I</c>),
/// at most N at a time. Children share nothing but the run directory, exactly as Slurm array tasks or Kubernetes
/// Indexed Job pods would; each child's stderr goes to <c>blocks/block-I/log.txt</c>.
/// </summary>
public static class BlockProcesses
{
    /// <summary>How long children asked to stop may take to finish their step and save before they are killed: a
    /// step of a large block can take minutes, and a killed child loses everything since its last checkpoint.</summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromMinutes(10);

    /// <summary>Returns the number of blocks whose process failed or never ran. When <paramref name="interruption"/>
    /// fires, no more blocks start and the running ones get the same signal, so each saves a checkpoint and exits (the
    /// next <c>--resume</c> continues from there); those still running after <see cref="StopGrace"/> are killed.</summary>
    /// <param name="commandArgs">This command's arguments as parsed (the command name first).</param>
    public static int Run(IReadOnlyList<string> commandArgs, IReadOnlyList<int> blocks, int jobs, AttentionTransferRun run, Action<string> log,
        Interruption interruption)
    {
        var args = ChildArguments(commandArgs.ToList());
        var (exe, prefix) = Self();
        int failed = 0;
        var queue = new Queue<int>(blocks);
        var running = new List<(int Block, Process Process, StreamWriter Log)>();
        // A second Ctrl-C kills this process; its children go with it rather than train on unwatched.
        Action killAll = () =>
        {
            lock (running)
                foreach (var (_, p, _) in running)
                    Kill(p);
        };
        interruption.Killing += killAll;
        try
        {
            bool stopped = false;
            while (queue.Count > 0 || running.Count > 0)
            {
                while (running.Count < jobs && queue.Count > 0 && !interruption.Requested)
                {
                    int b = queue.Dequeue();
                    Directory.CreateDirectory(run.BlockDirectory(b));
                    var info = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
                    foreach (var a in prefix.Concat(args).Concat(new[] { "--block", b.ToString() }))
                        info.ArgumentList.Add(a);
                    if (File.Exists(Path.Combine(run.BlockDirectory(b), "checkpoints", Linearize.Training.Trainer.LastCheckpointName)))
                        info.ArgumentList.Add("--resume");
                    info.Environment[Interruption.SupervisedVariable] = "1";
                    var p = Process.Start(info)!;
                    string logPath = Path.Combine(run.BlockDirectory(b), "log.txt");
                    var logWriter = new StreamWriter(logPath) { AutoFlush = true };
                    // The writer is closed only after WaitForExit() below, which also waits for both redirected streams to
                    // reach end of file; closing it from the Exited event raced the last stderr lines (a crash in CI).
                    p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (logWriter) logWriter.WriteLine(e.Data); };
                    p.OutputDataReceived += (_, _) => { };
                    p.BeginErrorReadLine();
                    p.BeginOutputReadLine();
                    lock (running)
                        running.Add((b, p, logWriter));
                    log($"block {b}: started process {p.Id} (log {logPath})");
                }

                if (running.Count == 0)
                    break;
                if (interruption.Requested && !stopped)
                {
                    stopped = true;
                    var processes = running.Select(x => x.Process).ToList();
                    log($"passing the signal on to {Plural.Of(processes.Count, "block process")}; waiting up to " +
                        $"{StopGrace.TotalMinutes:F0} min for each to save a checkpoint");
                    foreach (var p in Stop(processes, interruption.Signal, StopGrace))
                        log($"block {running.First(x => x.Process == p).Block}: still running after {StopGrace.TotalMinutes:F0} min; killed");
                }
                else
                {
                    Thread.Sleep(200);
                }

                foreach (var entry in running.Where(x => x.Process.HasExited).ToList())
                {
                    var (b, p, logWriter) = entry;
                    p.WaitForExit();
                    lock (logWriter)
                        logWriter.Dispose();
                    lock (running)
                        running.Remove(entry);
                    if (p.ExitCode == 0)
                        log($"block {b}: done");
                    else
                    {
                        failed++;
                        log(stopped ? $"block {b}: stopped (exit {p.ExitCode})" : $"block {b}: process exited with {p.ExitCode}");
                    }

                    p.Dispose();
                }
            }
        }
        finally
        {
            interruption.Killing -= killAll;
        }

        return failed + queue.Count;
    }

    /// <summary>Sends <paramref name="signal"/> to each process, waits until all have exited or
    /// <paramref name="grace"/> has passed, then kills the rest; returns those it killed.</summary>
    internal static List<Process> Stop(IReadOnlyList<Process> processes, int signal, TimeSpan grace)
    {
        foreach (var p in processes)
            if (!p.HasExited)
                PosixSignals.Send(p.Id, signal);
        var deadline = DateTime.UtcNow + grace;
        var killed = new List<Process>();
        foreach (var p in processes)
        {
            var left = deadline - DateTime.UtcNow;
            if (!p.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                Kill(p);
                killed.Add(p);
            }
        }

        // A killed process is gone only once reaped: wait, so callers can read its exit code.
        foreach (var p in killed)
            p.WaitForExit(10_000);
        return killed;
    }

    private static void Kill(Process p)
    {
        try
        {
            p.Kill();
        }
        catch (InvalidOperationException)
        {
            // exited meanwhile
        }
    }

    /// <summary>This command's own arguments minus those that select the whole run (<c>--jobs</c>, <c>--overwrite</c>, <c>--resume</c>, <c>--json</c>).</summary>
    internal static List<string> ChildArguments(List<string> args)
    {
        var result = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a is "--overwrite" or "--resume" or "--json" || a.StartsWith("--jobs=", StringComparison.Ordinal))
                continue;
            if (a == "--jobs")
            {
                i++;
                continue;
            }

            result.Add(a);
        }

        return result;
    }

    /// <summary>How to start this program again: the <c>linearize</c> app host itself, or else (run through
    /// <c>dotnet</c>, or hosted by a test runner) <c>dotnet Linearize.Cli.dll</c>.</summary>
    private static (string Exe, string[] Prefix) Self()
    {
        string? process = Environment.ProcessPath;
        if (process is not null && Path.GetFileName(process) == "linearize")
            return (process, Array.Empty<string>());
        string dotnet = process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? process
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        return (dotnet, new[] { typeof(BlockProcesses).Assembly.Location });
    }
}
