using System.Runtime.InteropServices;

namespace Linearize.Cli;

/// <summary>
/// How a training command stops when asked to: SIGINT (Ctrl-C) and SIGTERM (what Slurm and Kubernetes send on
/// pre-emption) both cancel <see cref="Token"/>, so the trainer saves a checkpoint at its next step boundary and the
/// command exits with the shell's code for that signal (<see cref="ExitCode"/>: 130 or 143), and <c>--resume</c>
/// continues exactly. A second signal kills at once, after <see cref="Killing"/> has run (a parent kills its
/// children then, so nothing outlives it).
/// </summary>
/// <remarks>
/// A process started by <see cref="BlockProcesses"/> is supervised (<see cref="SupervisedVariable"/>): Ctrl-C in a
/// terminal reaches the whole process group, so it gets the signal from the terminal and again from its parent, who
/// forwards it. There only the first counts; the parent decides when it is killed.
/// </remarks>
public sealed class Interruption : IDisposable
{
    /// <summary>Set in a child's environment by the parent that forwards signals to it.</summary>
    public const string SupervisedVariable = "LINEARIZE_SUPERVISED";

    private static int _lastSignal;

    private readonly CancellationTokenSource _cts = new();
    private readonly PosixSignalRegistration[] _registrations;
    private readonly bool _supervised = Environment.GetEnvironmentVariable(SupervisedVariable) is not null;
    private readonly string _stopping;
    private int _signal;

    private Interruption(string stopping)
    {
        _stopping = stopping;
        _registrations = new[] { PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal) };
    }

    /// <summary>Starts listening for SIGINT and SIGTERM until disposed; <paramref name="stopping"/> tells the user, on
    /// the first signal, what the command does before it stops.</summary>
    public static Interruption Listen(string stopping = "saving a checkpoint after this step, then stopping") => new(stopping);

    public CancellationToken Token => _cts.Token;

    /// <summary>Whether a signal has asked the command to stop.</summary>
    public bool Requested => _cts.IsCancellationRequested;

    /// <summary>The signal's number (2 or 15), or 0 if none arrived; what a parent forwards to its children.</summary>
    public int Signal => Volatile.Read(ref _signal);

    /// <summary>The exit code of a command stopped by this signal: 128 + its number (130 when none arrived, the code
    /// a cancelled command has always had).</summary>
    public int ExitCode => PosixSignals.ExitCode(Signal == 0 ? PosixSignals.SigInt : Signal);

    /// <summary>The exit code for an operation cancelled anywhere in this process (see <see cref="ExitCode"/>).</summary>
    public static int LastExitCode => PosixSignals.ExitCode(Volatile.Read(ref _lastSignal) is int s and > 0 ? s : PosixSignals.SigInt);

    /// <summary>Runs on a second signal, just before the process dies of it.</summary>
    public event Action? Killing;

    private void OnSignal(PosixSignalContext context)
    {
        int number = PosixSignals.Number(context.Signal);
        if (Interlocked.CompareExchange(ref _signal, number, 0) == 0)
        {
            context.Cancel = true;
            Volatile.Write(ref _lastSignal, number);
            bool term = number == PosixSignals.SigTerm;
            Console.Error.WriteLine($"{(term ? "SIGTERM" : "interrupt")}: {_stopping}" +
                                    (_supervised ? "" : term ? " (a second signal kills)" : " (Ctrl-C again to kill)"));
            _cts.Cancel();
            return;
        }

        if (_supervised)
        {
            context.Cancel = true;
            return;
        }

        // The default action (termination) follows once this returns.
        Killing?.Invoke();
    }

    public void Dispose()
    {
        foreach (var r in _registrations)
            r.Dispose();
        _cts.Dispose();
    }
}
