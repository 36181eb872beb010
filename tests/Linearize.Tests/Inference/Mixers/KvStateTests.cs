using Linearize.Inference.Mixers;

namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// The engine's KV cache keeps every appended position whichever way it grows: inside its reservation (no move),
/// past it (doubling, heads moved to their new offsets), or with no reservation at all; a clone holds the same
/// positions and is independent of the original.
/// </summary>
public unsafe class KvStateTests
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
}
