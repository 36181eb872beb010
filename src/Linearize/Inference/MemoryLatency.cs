using System.Diagnostics;

namespace Linearize.Inference;

/// <summary>
/// A load-to-use latency probe: one random cycle through every cache line of a buffer far larger than the caches, each
/// line holding the address of the next, followed one load at a time, so no two misses overlap and the hardware
/// prefetcher has no pattern to follow. With <see cref="MemoryBandwidth"/> it gives, by Little's law, how many cache
/// lines a reader keeps in flight to reach that bandwidth (bytes/s × latency / 64): what a kernel that reads less
/// than the floor is short of (docs/RESULTS.md, "The fast memory state").
/// </summary>
public sealed unsafe class MemoryLatency : IDisposable
{
    /// <summary>Bytes per cache line: one link of the chain per line.</summary>
    public const int LineBytes = 64;

    private readonly byte* _data;
    private readonly long _lines;
    private nint _cursor;
    private bool _disposed;

    /// <summary>Builds the chain over <paramref name="bytes"/> (whole lines, at least two) in the order a seeded
    /// Sattolo shuffle gives, which is always a single cycle through every line.</summary>
    public MemoryLatency(long bytes, int seed = 1)
    {
        _lines = bytes / LineBytes;
        if (_lines < 2)
            throw new ArgumentOutOfRangeException(nameof(bytes), "the probe needs at least two cache lines");
        _data = (byte*)HugePages.Allocate(_lines * LineBytes); // allocated as the packed weights are
        var next = (long*)_data;
        for (long i = 0; i < _lines; i++)
            next[i * (LineBytes / sizeof(long))] = i;
        var random = new Random(seed);
        for (long i = _lines - 1; i > 0; i--)
        {
            long j = random.NextInt64(i); // j < i (Sattolo): the permutation is one cycle
            long* a = next + i * (LineBytes / sizeof(long)), b = next + j * (LineBytes / sizeof(long));
            (*a, *b) = (*b, *a);
        }

        for (long i = 0; i < _lines; i++)
        {
            long* slot = next + i * (LineBytes / sizeof(long));
            *slot = (long)(_data + *slot * LineBytes);
        }

        _cursor = (nint)_data;
    }

    /// <summary>Cache lines in the chain.</summary>
    public long Lines => _lines;

    /// <summary>Nanoseconds per load over <paramref name="hops"/> dependent loads, continuing from where the last call stopped.</summary>
    public double MeasureNanoseconds(long hops = 2_000_000)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (hops < 1)
            throw new ArgumentOutOfRangeException(nameof(hops));
        nint p = _cursor;
        long start = Stopwatch.GetTimestamp();
        for (long i = 0; i < hops; i++)
            p = *(nint*)p;
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        _cursor = p;
        return seconds * 1e9 / hops;
    }

    /// <summary>The line the chain visits after <paramref name="line"/> (tests walk the cycle).</summary>
    internal long Next(long line) => (*(byte**)(_data + line * LineBytes) - _data) / LineBytes;

    public void Dispose()
    {
        if (_disposed)
            return;
        HugePages.Free(_data);
        _disposed = true;
    }
}
