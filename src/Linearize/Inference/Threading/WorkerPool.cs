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
/// busy machine steals the core another process needs. Likewise the caller, once no chunk is left to claim, spins for
/// <see cref="CallerSpinMicroseconds"/> only, then sleeps until the chunk another thread holds is done. No allocation per run.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker busy-waits before it starts yielding its core.</summary>
    public const int SpinMicroseconds = 50;

    /// <summary>How long an idle worker keeps yielding before it sleeps.</summary>
    public const int YieldMicroseconds = 2000;

    /// <summary>How long the caller, its own claims done, busy-waits for chunks other threads hold before it sleeps
    /// until the last one finishes. Chunks take microseconds, so a longer wait means the holder was descheduled: on a
    /// shared machine it runs again only after another process's time slice, and a caller spinning meanwhile would
    /// spend its own share of the core on nothing (the scheduler credits a sleeper's unused share back on wake-up).</summary>
    public const int CallerSpinMicroseconds = 30;

    /// <summary>The low 32 bits of <see cref="_state"/> once a run is over: no worker can claim from it any more.</summary>
    private const int Closed = int.MaxValue;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake; // one per worker: a shared one would let a re-sleeping worker take another's permit
    private readonly int[] _asleep;
    private readonly SemaphoreSlim _finished = new(0); // the caller's, released by the thread that completes its run
    private int _callerAsleep;
    private long _callerSleeps;

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

    /// <summary>How often the caller has slept until a chunk held by another thread was done (tests read it).</summary>
    internal long CallerSleeps => Volatile.Read(ref _callerSleeps);

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
        WaitForChunksHeldElsewhere(count);

        // Close the run before the fields are reused: a late worker still holding this run's counter fails its claim.
        Interlocked.Exchange(ref _state, ((generation & 0x7FFFFFFF) << 32) | Closed);
        Volatile.Write(ref _job, null);
        if (_failure is { } failure)
            throw new InvalidOperationException("an engine worker failed", failure);
    }

    /// <summary>Waits until all <paramref name="count"/> indices are done: spins <see cref="CallerSpinMicroseconds"/>,
    /// then sleeps until the thread that finishes the last chunk wakes it (the same Dekker-style hand-shake as the
    /// workers' sleep, in the other direction: announce, re-check, wait; <see cref="Work"/> completes, then takes the flag).</summary>
    private void WaitForChunksHeldElsewhere(int count)
    {
        if (Volatile.Read(ref _done) >= count)
            return;
        long spinUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency * CallerSpinMicroseconds / 1_000_000;
        int rounds = 0;
        while (Volatile.Read(ref _done) < count)
        {
            if ((++rounds & 15) != 0)
            {
                Thread.SpinWait(8);
                continue;
            }

            if (Stopwatch.GetTimestamp() < spinUntil)
                continue;
            Interlocked.Exchange(ref _callerAsleep, 1);
            if (Volatile.Read(ref _done) < count)
            {
                _callerSleeps++;
                _finished.Wait();
            }

            Interlocked.Exchange(ref _callerAsleep, 0);
        }

        // A permit released after the re-check above saw the run complete would wake a later wait early; that wait
        // re-checks its own count, so a stale permit costs one loop, never a wrong result. Drain it anyway.
        while (_finished.CurrentCount > 0)
            _finished.Wait(0);
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

            if (Interlocked.Add(ref _done, end - next) >= count && Interlocked.Exchange(ref _callerAsleep, 0) == 1)
                _finished.Release();
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
        _finished.Dispose();
    }
}
