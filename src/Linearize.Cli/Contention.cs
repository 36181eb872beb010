using System.Diagnostics;

namespace Linearize.Cli;

/// <summary>
/// Competing load for benchmarks (<c>--contend N</c>): N busy processes of its own (a shell loop each) for as long as
/// the measurement runs, so the figure on a shared machine is measured beside the idle one, in the same run. Disposing
/// kills them.
/// </summary>
public sealed class Contention : IDisposable
{
    private readonly List<Process> _processes = new();

    public Contention(int processes)
    {
        if (processes < 0)
            throw new LinearizeException($"--contend must be 0 or more, got {processes}");
        try
        {
            for (int i = 0; i < processes; i++)
                _processes.Add(Process.Start(new ProcessStartInfo("/bin/sh", new[] { "-c", "while :; do :; done" })
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                })!);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Count => _processes.Count;

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited)
                    p.Kill();
                p.WaitForExit(2000);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }

            p.Dispose();
        }

        _processes.Clear();
    }
}
