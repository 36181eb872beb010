using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Threading;

/// <summary>
/// Reads spans of memory with no arithmetic beyond an integer sum (kept, so the loads cannot be optimised away): the
/// time a memory-bound step cannot beat when it must read the same bytes where they lie. The spans are cut into
/// pieces of at most <see cref="PieceBytes"/>, claimed one by one as the engine's regions are, so a preempted thread
/// delays only its piece.
/// </summary>
internal sealed unsafe class SpanReadJob : RangeJob
{
    /// <summary>Bytes per claimed piece: large enough that claiming costs nothing beside reading, small enough that two
    /// threads share even a small model's matrices evenly.</summary>
    public const long PieceBytes = 256 * 1024;

    private readonly (nint Start, long Bytes)[] _pieces;
    private readonly ulong[] _sums;

    public SpanReadJob(IEnumerable<(nint Start, long Bytes)> spans)
    {
        var pieces = new List<(nint, long)>();
        foreach (var (start, bytes) in spans)
            for (long at = 0; at < bytes; at += PieceBytes)
                pieces.Add((start + (nint)at, Math.Min(PieceBytes, bytes - at)));
        _pieces = pieces.ToArray();
        _sums = new ulong[_pieces.Length];
        Bytes = _pieces.Sum(p => p.Item2);
    }

    /// <summary>Pieces to claim: the count for <see cref="WorkerPool.Run"/>.</summary>
    public int Count => _pieces.Length;

    /// <summary>Bytes one run reads.</summary>
    public long Bytes { get; }

    /// <summary>The 64-bit wrapping sum of every span's bytes read as little-endian 8-byte words (a last partial word
    /// zero-padded), after a run: what the tests compare with a plain loop.</summary>
    public ulong Checksum
    {
        get
        {
            ulong sum = 0;
            foreach (ulong s in _sums)
                sum += s;
            return sum;
        }
    }

    // Optimised from the first call, as the matrix kernels are: tiered compilation would time its first reads unoptimised.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        for (int i = start; i < end; i++)
        {
            var (from, bytes) = _pieces[i];
            byte* p = (byte*)from;
            // Four streams at once, one per quarter of the piece (as the matrix kernels read four rows of a tile): where
            // the hardware prefetcher stops at every 4 KiB page (a mapped file's pages), one stream per thread leaves
            // the memory system idle between pages, and the kernels, reading four, would beat their own floor.
            long quarter = bytes / 4 & ~255L;
            var a0 = Vector512<ulong>.Zero;
            var a1 = Vector512<ulong>.Zero;
            var a2 = Vector512<ulong>.Zero;
            var a3 = Vector512<ulong>.Zero;
            for (long q = 0; q < quarter; q += 64)
            {
                a0 += Vector512.Load((ulong*)(p + q));
                a1 += Vector512.Load((ulong*)(p + quarter + q));
                a2 += Vector512.Load((ulong*)(p + 2 * quarter + q));
                a3 += Vector512.Load((ulong*)(p + 3 * quarter + q));
            }

            long at = 4 * quarter;
            for (; at + 64 <= bytes; at += 64)
                a0 += Vector512.Load((ulong*)(p + at));
            ulong sum = Vector512.Sum(a0 + a1 + a2 + a3);
            for (; at + 8 <= bytes; at += 8)
                sum += *(ulong*)(p + at);
            ulong last = 0;
            for (int k = 0; at + k < bytes; k++)
                last |= (ulong)p[at + k] << (8 * k);
            _sums[i] = sum + last;
        }
    }
}
