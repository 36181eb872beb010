using System.Diagnostics;
using Linearize.Inference.Threading;

namespace Linearize.Inference;

/// <summary>
/// A STREAM-style read probe: the bytes per second that N threads sum out of a buffer far
/// larger than the caches — the ceiling a memory-bound decoding step can reach with the same threads. The threads claim
/// pieces and read each as four streams (<see cref="SpanReadJob"/>, the read <see cref="DecodeEngine.TimeWeightRead"/>
/// times on the model's own pages); the best of several passes is reported, as STREAM does.
/// </summary>
public static unsafe class MemoryBandwidth
{
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
            // The read the engine's floor uses (four streams per thread, small pieces claimed by whichever thread is free).
            var job = new SpanReadJob(new[] { ((nint)data, floats * sizeof(float)) });
            double best = 0;
            for (int pass = 0; pass < passes + 1; pass++)
            {
                long start = Stopwatch.GetTimestamp();
                pool.Run(job, job.Count);
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
