using Linearize.Inference;

namespace Linearize.Tests.Inference;

/// <summary>The latency probe's chain: one cycle through every cache line, so a walk never settles into a part of the
/// buffer small enough to stay in cache.</summary>
public sealed class MemoryLatencyTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(1000)]
    [InlineData(65_537)]
    public void TheChainVisitsEveryLineOnceBeforeReturning(int lines)
    {
        using var chain = new MemoryLatency((long)lines * MemoryLatency.LineBytes + 17); // a partial line is left out
        Assert.Equal(lines, chain.Lines);
        var seen = new bool[lines];
        long line = 0;
        for (int i = 0; i < lines; i++)
        {
            Assert.False(seen[line], $"line {line} reached twice after {i} hops");
            seen[line] = true;
            line = chain.Next(line);
            Assert.InRange(line, 0, lines - 1);
        }

        Assert.Equal(0, line);
        Assert.True(chain.MeasureNanoseconds(10_000) > 0);
    }

    [Fact]
    public void SeedsGiveDifferentOrders()
    {
        using var a = new MemoryLatency(4096 * MemoryLatency.LineBytes, seed: 1);
        using var b = new MemoryLatency(4096 * MemoryLatency.LineBytes, seed: 2);
        Assert.NotEqual(a.Next(0), b.Next(0));
    }

    [Fact]
    public void FewerThanTwoLinesAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryLatency(MemoryLatency.LineBytes));
        var chain = new MemoryLatency(2 * MemoryLatency.LineBytes);
        chain.Dispose();
        Assert.Throws<ObjectDisposedException>(() => chain.MeasureNanoseconds());
    }
}
