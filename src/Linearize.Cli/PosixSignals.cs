using System.Runtime.InteropServices;

namespace Linearize.Cli;

/// <summary>
/// Sends a signal to another process. .NET can only kill a process (SIGKILL), which gives it no chance to save;
/// stopping a child the way the shell or a scheduler stops us needs libc's <c>kill(2)</c>.
/// </summary>
internal static class PosixSignals
{
    public const int SigInt = 2;
    public const int SigTerm = 15;

    /// <summary>The signal's number on Linux; <see cref="PosixSignal"/>'s values are not the platform's.</summary>
    public static int Number(PosixSignal signal) => signal switch
    {
        PosixSignal.SIGINT => SigInt,
        PosixSignal.SIGTERM => SigTerm,
        _ => throw new ArgumentOutOfRangeException(nameof(signal), signal, "only SIGINT and SIGTERM are sent"),
    };

    /// <summary>The shell's exit code for a process stopped by <paramref name="signal"/>: 128 + its number.</summary>
    public static int ExitCode(int signal) => 128 + signal;

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/>; false if the process is gone.</summary>
    public static bool Send(int pid, int signal) => kill(pid, signal) == 0;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
