using System.Diagnostics;

namespace Linearize.Inference.Threading;

/// <summary>
/// A fixed set of threads that run one <see cref="RangeJob"/> at a time, each over a contiguous slice of the range;
/// the calling thread takes slice 0. A decoding step issues ~5 parallel regions per layer a few microseconds apart,
/// so idle workers spin (for <see cref="SpinMicroseconds"/>) before they block: a kernel wake-up would cost tens of
/// microseconds per region. Publishing a job is a generation counter bump; completion is a countdown the caller
/// spins on. No allocation per run.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker spins before it sleeps.</summary>
    public const int SpinMicroseconds = 2000;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake; // one per worker: a shared one would let a re-sleeping worker take another's permit
    private readonly int[] _asleep;
    private long _generation;
    private int _pending;
    private volatile bool _stopping;
    private RangeJob? _job;
    private int _count;
    private int _grain;
    private Exception? _failure;

    public WorkerPool(int threads)
    {
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "a pool needs at least one thread");
        Threads = threads;
        _threads = new Thread[threads - 1];
        _wake = Enumerable.Range(0, threads).Select(_ => new SemaphoreSlim(0)).ToArray();
        _asleep = new int[threads];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"linearize-decode-{index}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run a job, the caller included.</summary>
    public int Threads { get; }

    /// <summary>
    /// Runs <paramref name="job"/> over <c>[0, count)</c>, split into at most <see cref="Threads"/> contiguous slices whose
    /// boundaries are multiples of <paramref name="grain"/>; returns when every slice is done. Not re-entrant.
    /// </summary>
    public void Run(RangeJob job, int count, int grain = 1)
    {
        if (count <= 0)
            return;
        grain = Math.Max(1, grain);
        int parts = Math.Min(Threads, (count + grain - 1) / grain);
        if (parts <= 1)
        {
            job.Execute(0, count);
            return;
        }

        _job = job;
        _count = count;
        _grain = grain;
        _failure = null;
        Volatile.Write(ref _pending, Threads - 1);
        Interlocked.Increment(ref _generation);
        for (int i = 1; i < Threads; i++)
            if (Interlocked.Exchange(ref _asleep[i], 0) == 1)
                _wake[i].Release();

        Execute(0);
        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0)
            spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        if (_failure is { } failure)
            throw new InvalidOperationException("a decoding worker failed", failure);
    }

    private void Execute(int part)
    {
        var (start, end) = Slice(part);
        if (start < end)
            _job!.Execute(start, end);
    }

    /// <summary>Slice <paramref name="part"/> of <c>[0, count)</c>: equal shares rounded to the grain.</summary>
    private (int Start, int End) Slice(int part)
    {
        int units = (_count + _grain - 1) / _grain;
        int start = (int)((long)units * part / Threads) * _grain;
        int end = (int)((long)units * (part + 1) / Threads) * _grain;
        return (Math.Min(start, _count), Math.Min(end, _count));
    }

    private void WorkerLoop(int index)
    {
        long seen = 0;
        while (true)
        {
            long deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                Thread.SpinWait(16);
                if ((++spins & 63) == 0 && Stopwatch.GetTimestamp() > deadline)
                {
                    // Dekker-style hand-shake with Run: announce the sleep, then re-check; Run bumps the generation,
                    // then takes the flag, so one of the two always sees the other. An extra permit only causes a
                    // spurious wake-up of this worker, which re-checks and sleeps again.
                    Interlocked.Exchange(ref _asleep[index], 1);
                    if (Volatile.Read(ref _generation) == seen && !_stopping)
                        _wake[index].Wait();
                    Interlocked.Exchange(ref _asleep[index], 0);
                    deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
                }
            }

            if (_stopping)
                return;
            seen = Volatile.Read(ref _generation);
            try
            {
                Execute(index);
            }
            catch (Exception e)
            {
                _failure = e;
            }

            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var w in _wake)
            w.Release();
        foreach (var t in _threads)
            t.Join();
        foreach (var w in _wake)
            w.Dispose();
    }
}
