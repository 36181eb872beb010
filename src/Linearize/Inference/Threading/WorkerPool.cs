using System.Diagnostics;

namespace Linearize.Inference.Threading;

/// <summary>
/// A fixed set of threads that run one <see cref="RangeJob"/> at a time. The range is cut into chunks of
/// <c>grain</c> indices that every thread — the caller included — claims from one shared counter until none is left,
/// so a thread the OS has descheduled delays only the chunk it holds: the others take the rest. (Equal static slices
/// would make every region wait for the slowest thread; on a shared machine that turned 0.8 ms decoding steps into
/// 74 ms.) Idle workers spin for <see cref="SpinMicroseconds"/>, then yield the core for up to
/// <see cref="YieldMicroseconds"/>, then sleep on a per-worker semaphore: a decoding step issues a few parallel
/// regions per layer microseconds apart, and a kernel wake-up costs tens of microseconds, but a spinning thread on a
/// busy machine steals the core another process needs. No allocation per run.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker busy-waits before it starts yielding its core.</summary>
    public const int SpinMicroseconds = 50;

    /// <summary>How long an idle worker keeps yielding before it sleeps.</summary>
    public const int YieldMicroseconds = 2000;

    /// <summary>The low 32 bits of <see cref="_state"/> once a run is over: no worker can claim from it any more.</summary>
    private const int Closed = int.MaxValue;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake; // one per worker: a shared one would let a re-sleeping worker take another's permit
    private readonly int[] _asleep;

    /// <summary>(run generation &lt;&lt; 32) | next unclaimed index. Claims are compare-and-swap on the whole word, so a
    /// worker that woke late for an earlier run can never take a chunk of the current one with the earlier job.</summary>
    private long _state;

    private long _generation;
    private int _done;
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
            _threads[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"linearize-engine-{index}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run a job, the caller included.</summary>
    public int Threads { get; }

    /// <summary>
    /// Runs <paramref name="job"/> over <c>[0, count)</c> in chunks of <paramref name="grain"/> indices (the last may be
    /// shorter), claimed by whichever thread is free; returns when every chunk is done. Each chunk is one
    /// <see cref="RangeJob.Execute"/> call. Not re-entrant.
    /// </summary>
    public void Run(RangeJob job, int count, int grain = 1)
    {
        if (count <= 0)
            return;
        grain = Math.Max(1, grain);
        if (Threads == 1 || count <= grain)
        {
            job.Execute(0, count);
            return;
        }

        Volatile.Write(ref _job, job);
        Volatile.Write(ref _count, count);
        Volatile.Write(ref _grain, grain);
        Volatile.Write(ref _done, 0);
        _failure = null;
        long generation = Interlocked.Increment(ref _generation);
        Interlocked.Exchange(ref _state, (generation & 0x7FFFFFFF) << 32);
        for (int i = 1; i < Threads; i++)
            if (Interlocked.Exchange(ref _asleep[i], 0) == 1)
                _wake[i].Release();

        Work(generation);
        var spin = new SpinWait();
        while (Volatile.Read(ref _done) < count)
            spin.SpinOnce(sleep1Threshold: -1);

        // Close the run before the fields are reused: a late worker still holding this run's counter fails its claim.
        Interlocked.Exchange(ref _state, ((generation & 0x7FFFFFFF) << 32) | Closed);
        Volatile.Write(ref _job, null);
        if (_failure is { } failure)
            throw new InvalidOperationException("an engine worker failed", failure);
    }

    /// <summary>Claims and runs chunks of run <paramref name="generation"/> until none is left.</summary>
    private void Work(long generation)
    {
        long tag = generation & 0x7FFFFFFF;
        while (true)
        {
            long s = Volatile.Read(ref _state);
            if (s >> 32 != tag)
                return;
            int next = (int)(s & 0xFFFFFFFF);
            int count = Volatile.Read(ref _count), grain = Volatile.Read(ref _grain);
            var job = Volatile.Read(ref _job);
            if (next >= count || job is null)
                return;
            if (Interlocked.CompareExchange(ref _state, s + grain, s) != s)
                continue;
            int end = Math.Min(count, next + grain);
            try
            {
                job.Execute(next, end);
            }
            catch (Exception e)
            {
                _failure = e;
            }

            Interlocked.Add(ref _done, end - next);
        }
    }

    private void WorkerLoop(int index)
    {
        long seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            long spinUntil = start + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
            long yieldUntil = start + Stopwatch.Frequency * YieldMicroseconds / 1_000_000;
            int rounds = 0;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                if ((++rounds & 15) != 0)
                {
                    Thread.SpinWait(16);
                    continue;
                }

                long now = Stopwatch.GetTimestamp();
                if (now < spinUntil)
                    continue;
                if (now < yieldUntil)
                {
                    Thread.Yield();
                    continue;
                }

                // Dekker-style hand-shake with Run: announce the sleep, then re-check; Run bumps the generation,
                // then takes the flag, so one of the two always sees the other. An extra permit only causes a
                // spurious wake-up of this worker, which re-checks and sleeps again.
                Interlocked.Exchange(ref _asleep[index], 1);
                if (Volatile.Read(ref _generation) == seen && !_stopping)
                    _wake[index].Wait();
                Interlocked.Exchange(ref _asleep[index], 0);
                start = Stopwatch.GetTimestamp();
                spinUntil = start + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
                yieldUntil = start + Stopwatch.Frequency * YieldMicroseconds / 1_000_000;
            }

            if (_stopping)
                return;
            seen = Volatile.Read(ref _generation);
            Work(seen);
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
