using System.Runtime.InteropServices;
using Linearize.Inference.Mixers;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// The engine's KV cache keeps every appended position whichever way it grows: inside its reservation (no move),
/// past it (doubling, heads moved to their new offsets), or with no reservation at all; a clone holds the same
/// positions and is independent of the original.
/// </summary>
public unsafe partial class KvStateTests
{
    private const int Heads = 3, HeadDim = 8;

    private static float KeyAt(int h, int pos, int i) => h * 10_000 + pos * 10 + i * 0.5f;

    private static float ValueAt(int h, int pos, int i) => -KeyAt(h, pos, i);

    private static void Append(KvState kv, int positions)
    {
        for (int pos = kv.Length; pos < positions; pos++)
        {
            kv.EnsureCapacity(pos + 1);
            for (int h = 0; h < Heads; h++)
                for (int i = 0; i < HeadDim; i++)
                {
                    kv.Key(h, pos)[i] = KeyAt(h, pos, i);
                    kv.Value(h, pos)[i] = ValueAt(h, pos, i);
                }

            kv.Length = pos + 1;
        }
    }

    private static void AssertHolds(KvState kv, int positions)
    {
        Assert.Equal(positions, kv.Length);
        for (int h = 0; h < Heads; h++)
            for (int pos = 0; pos < positions; pos++)
                for (int i = 0; i < HeadDim; i++)
                {
                    Assert.Equal(KeyAt(h, pos, i), kv.Key(h, pos)[i]);
                    Assert.Equal(ValueAt(h, pos, i), kv.Value(h, pos)[i]);
                }
    }

    [Theory]
    [InlineData(0, 150)]   // no reservation: doubles from InitialCapacity
    [InlineData(100, 70)]  // inside the reservation
    [InlineData(100, 333)] // past it: doubles from the reservation
    public void EveryAppendedPositionIsKept(int reserve, int positions)
    {
        using var kv = new KvState(Heads, HeadDim, reserve);
        Append(kv, positions);
        AssertHolds(kv, positions);
        Assert.Equal(2L * positions * Heads * HeadDim * sizeof(float), kv.StateBytes);
    }

    [Fact]
    public void AReservedCacheDoesNotMoveWhileItFits()
    {
        using var kv = new KvState(Heads, HeadDim, 100);
        float* keys = kv.Key(0, 0);
        Append(kv, 100);
        Assert.True(keys == kv.Key(0, 0), "the cache moved inside its reservation");
        Assert.Equal(100, kv.Capacity);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void ACloneHoldsTheSamePositionsAndGrowsOnItsOwn(int reserve)
    {
        using var kv = new KvState(Heads, HeadDim, reserve);
        Append(kv, 77);
        using var copy = (KvState)kv.Clone();
        AssertHolds(copy, 77);
        Append(copy, 250);
        AssertHolds(copy, 250);
        AssertHolds(kv, 77);
    }

    [LibraryImport("libc", EntryPoint = "mincore")]
    private static partial int Mincore(nint address, nuint length, byte* residency);

    /// <summary>Which of the pages under <c>[p, p + bytes)</c> are backed (<c>mincore</c>).</summary>
    private static bool[] Backed(float* p, long bytes)
    {
        long start = (long)p & ~4095L, pages = ((long)p + bytes - start + 4095) / 4096;
        var residency = new byte[pages];
        fixed (byte* r = residency)
            Assert.Equal(0, Mincore((nint)start, (nuint)(pages * 4096), r));
        return residency.Select(b => (b & 1) != 0).ToArray();
    }

    [PopulateFact]
    public void AReservedCacheIsBackedAheadOfItsWritesNotBeyond()
    {
        const int dim = 64, reserve = 4096; // a head's block: 1 MiB (256 positions per 64 KiB)
        using var kv = new KvState(Heads, dim, reserve);
        long bytesPerPosition = dim * sizeof(float);
        // With transparent huge pages always on, the kernel may back a whole 2 MiB around what was asked for.
        bool hugeAlways = File.Exists("/sys/kernel/mm/transparent_hugepage/enabled") &&
            File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[always]");

        kv.EnsureCapacity(300); // a prompt: its positions are backed before they are written, and no more than a page beyond
        for (int h = 0; h < Heads; h++)
        {
            Assert.All(Backed(kv.Key(h, 0), 300 * bytesPerPosition), Assert.True);
            Assert.All(Backed(kv.Value(h, 0), 300 * bytesPerPosition), Assert.True);
            if (!hugeAlways)
                Assert.All(Backed(kv.Key(h, 320), (reserve - 320) * bytesPerPosition), Assert.False);
        }

        kv.Length = 300;
        kv.EnsureCapacity(301); // a decoding step past them: the next PopulatePositions are backed at once
        int backed = 300 + KvState.PopulatePositions;
        for (int h = 0; h < Heads; h++)
        {
            Assert.All(Backed(kv.Key(h, 0), backed * bytesPerPosition), Assert.True);
            Assert.All(Backed(kv.Value(h, 0), backed * bytesPerPosition), Assert.True);
            if (!hugeAlways)
                Assert.All(Backed(kv.Value(h, backed + 16), (reserve - backed - 16) * bytesPerPosition), Assert.False);
            Assert.Equal(0f, kv.Key(h, backed - 1)[dim - 1]);
        }
    }
}
