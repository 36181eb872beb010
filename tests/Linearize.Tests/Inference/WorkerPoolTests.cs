using Linearize.Inference.Threading;

namespace Linearize.Tests.Inference;

/// <summary>The engine's worker pool: every index exactly once whatever the chunking, across sleeps and wake-ups, and a
/// stalled thread delays only the chunk it holds.</summary>
public sealed class WorkerPoolTests
{
    private sealed class Recorder : RangeJob
    {
        public readonly int[] Hits = new int[1000];

        public override void Execute(int start, int end)
        {
            for (int i = start; i < end; i++)
                Interlocked.Increment(ref Hits[i]);
        }
    }

    [Fact]
    public void CoversEveryIndexOnceAndSurvivesSleeping()
    {
        using var pool = new WorkerPool(3);
        var job = new Recorder();
        for (int run = 0; run < 2000; run++)
        {
            int count = 1 + run * 7 % 997;
            Array.Clear(job.Hits);
            pool.Run(job, count, grain: 1 + run % 5);
            for (int i = 0; i < job.Hits.Length; i++)
                Assert.Equal(i < count ? 1 : 0, job.Hits[i]);
            if (run % 500 == 0)
                Thread.Sleep(WorkerPool.YieldMicroseconds / 1000 + 5); // let the workers fall asleep, then wake them
        }
    }

    /// <summary>Stands for a thread the OS has descheduled: the first chunk a worker (not the caller) takes blocks until
    /// every other chunk is done, which only the caller is left to do. Each other chunk takes a millisecond, so the
    /// worker is awake and claims one before the caller could finish alone.</summary>
    private sealed class StallingJob : RangeJob
    {
        public readonly int[] Hits = new int[64];
        public readonly ManualResetEventSlim OthersDone = new();
        public int CallerThread;
        public int Stalled;
        public bool TimedOut;
        private int _finished;

        public override void Execute(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                if (Environment.CurrentManagedThreadId != CallerThread && Interlocked.Exchange(ref Stalled, 1) == 0)
                {
                    TimedOut = !OthersDone.Wait(TimeSpan.FromSeconds(10));
                    Interlocked.Increment(ref Hits[i]);
                    continue;
                }

                Thread.Sleep(1);
                Interlocked.Increment(ref Hits[i]);
                if (Interlocked.Increment(ref _finished) == Hits.Length - 1)
                    OthersDone.Set();
            }
        }
    }

    [Fact]
    public void AStalledWorkerDelaysOnlyItsChunk()
    {
        using var pool = new WorkerPool(2);
        var job = new StallingJob();
        var caller = new Thread(() =>
        {
            job.CallerThread = Environment.CurrentManagedThreadId;
            pool.Run(job, job.Hits.Length, grain: 1);
        });
        caller.Start();
        Assert.True(caller.Join(TimeSpan.FromSeconds(20)), "the run did not finish");
        Assert.Equal(1, job.Stalled);
        Assert.False(job.TimedOut, "the caller did not take the stalled worker's share");
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    /// <summary>A chunk a worker holds for a millisecond — far past <see cref="WorkerPool.CallerSpinMicroseconds"/> —
    /// sends the caller to sleep; the worker that finishes the run must wake it, every time (a lost wake-up hangs). The
    /// caller's own chunks take 100 µs, so the workers are awake and claim some before it could finish alone.</summary>
    private sealed class SlowWorkerJob : RangeJob
    {
        public readonly int[] Hits = new int[8];
        public int CallerThread;

        public override void Execute(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                if (Environment.CurrentManagedThreadId != CallerThread)
                    Thread.Sleep(1);
                else
                    for (long until = System.Diagnostics.Stopwatch.GetTimestamp() + System.Diagnostics.Stopwatch.Frequency / 10_000;
                         System.Diagnostics.Stopwatch.GetTimestamp() < until;)
                        Thread.SpinWait(16);
                Interlocked.Increment(ref Hits[i]);
            }
        }
    }

    [Fact]
    public void TheCallerSleepsThroughAHeldChunkAndIsWokenEveryTime()
    {
        using var pool = new WorkerPool(3);
        var job = new SlowWorkerJob();
        var caller = new Thread(() =>
        {
            job.CallerThread = Environment.CurrentManagedThreadId;
            for (int run = 0; run < 300; run++)
            {
                Array.Clear(job.Hits);
                pool.Run(job, job.Hits.Length, grain: 1);
                if (job.Hits.Any(h => h != 1))
                    throw new InvalidOperationException($"run {run}: an index was not done exactly once");
            }
        }) { IsBackground = true }; // a missed wake-up must fail this test, not keep the test host alive
        caller.Start();
        Assert.True(caller.Join(TimeSpan.FromSeconds(60)), "a run never finished: the caller missed its wake-up");
        Assert.True(pool.CallerSleeps > 0, "the caller never slept, so the hand-shake was not exercised");
    }
}
