using Spectre.Console;

namespace Linearize.Cli;

/// <summary>
/// Human-facing output goes to stderr (progress bars, tables for humans), so stdout carries only the
/// command's result (generated text, JSON). Progress bars are drawn only when stderr is a terminal.
/// </summary>
public static class ConsoleUi
{
    public static readonly IAnsiConsole Err = AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(Console.Error),
    });

    public static readonly IAnsiConsole Out = CreateOut();

    /// <summary>Stdout; redirected to a file or pipe it gets a wide line (Spectre would assume 80 columns and fold wide
    /// tables such as <c>eval tasks</c> with several models into unreadable cells).</summary>
    private static IAnsiConsole CreateOut()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected)
            console.Profile.Width = 240;
        return console;
    }

    public static bool Interactive => !Console.IsErrorRedirected;

    /// <summary>Runs <paramref name="work"/> with a progress bar on stderr (or none when not interactive).</summary>
    public static T WithProgress<T>(string label, Func<IProgress<(int Done, int Total)>, T> work)
    {
        if (!Interactive)
            return work(new Progress<(int, int)>(_ => { }));
        T result = default!;
        Err.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(label));
                var progress = new SynchronousProgress(p =>
                {
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Done;
                });
                result = work(progress);
            });
        return result;
    }

    /// <summary>Reports on the calling thread (System.Progress would post to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<(int Done, int Total)> report) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) value) => report(value);
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
