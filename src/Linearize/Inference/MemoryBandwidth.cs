using System.Diagnostics;
using System.Runtime.Intrinsics;
using Linearize.Inference.Threading;

namespace Linearize.Inference;

/// <summary>
/// A STREAM-style read probe: the bytes per second that N threads sum out of a buffer far
/// larger than the caches — the ceiling a memory-bound decoding step can reach with the same threads. Each thread claims
/// contiguous slices and sums each with four vector accumulators (the access pattern of the matrix kernels); the best of several
/// passes is reported, as STREAM does.
/// </summary>
public static unsafe class MemoryBandwidth
{
    private sealed class ReadJob : RangeJob
    {
        public float* Data;
        public long Floats;
        public int Parts;
        public readonly double[] Sums = new double[256];

        public override void Execute(int start, int end)
        {
            for (int part = start; part < end; part++)
            {
                long from = Floats * part / Parts & ~63L, to = part == Parts - 1 ? Floats : Floats * (part + 1) / Parts & ~63L;
                var a0 = Vector512<float>.Zero;
                var a1 = Vector512<float>.Zero;
                var a2 = Vector512<float>.Zero;
                var a3 = Vector512<float>.Zero;
                for (long i = from; i + 64 <= to; i += 64)
                {
                    a0 += Vector512.Load(Data + i);
                    a1 += Vector512.Load(Data + i + 16);
                    a2 += Vector512.Load(Data + i + 32);
                    a3 += Vector512.Load(Data + i + 48);
                }

                Sums[part] = Vector512.Sum(a0 + a1 + a2 + a3); // kept, so the loads cannot be optimised away
            }
        }
    }

    /// <summary>Read bandwidth in bytes per second.</summary>
    public static double Measure(int threads, long bytes = 1L << 30, int passes = 5)
    {
        if (bytes < 1 << 20)
            throw new ArgumentOutOfRangeException(nameof(bytes), "the probe needs at least 1 MiB");
        long floats = bytes / sizeof(float);
        var data = (float*)HugePages.Allocate(floats * sizeof(float)); // allocated as the packed weights are
        try
        {
            new Span<float>(data, (int)Math.Min(floats, int.MaxValue)).Fill(1f); // touch every page before timing
            for (long i = int.MaxValue; i < floats; i++)
                data[i] = 1f;
            using var pool = new WorkerPool(threads);
            // Many parts, claimed by whichever thread is free (as the engine's regions are).
            var job = new ReadJob { Data = data, Floats = floats, Parts = Math.Min(256, 32 * threads) };
            double best = 0;
            for (int pass = 0; pass < passes + 1; pass++)
            {
                long start = Stopwatch.GetTimestamp();
                pool.Run(job, job.Parts);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (pass > 0)
                    best = Math.Max(best, floats * sizeof(float) / seconds);
            }

            return best;
        }
        finally
        {
            HugePages.Free(data);
        }
    }
}
