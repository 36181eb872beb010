using Linearize.Generation;

namespace Linearize.Tests.Generation;

public sealed class StopSequenceMatcherTests
{
    private static (string Emitted, bool Stopped) Run(string[] stops, params string[] pieces)
    {
        var m = new StopSequenceMatcher(stops);
        string all = string.Concat(pieces.Select(m.Push));
        return (all + m.Flush(), m.Stopped);
    }

    [Fact]
    public void AStopSplitAcrossPiecesIsNeverHalfEmitted()
    {
        var m = new StopSequenceMatcher(new[] { "END" });
        Assert.Equal("abc", m.Push("abcE"));
        Assert.Equal("", m.Push("N"));
        Assert.Equal("", m.Push("Dxyz"));
        Assert.True(m.Stopped);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void AHeldBackPrefixThatDoesNotCompleteIsReleased()
    {
        Assert.Equal(("abENxENDy", false), Run(new[] { "ENDZ" }, "ab", "EN", "x", "END", "y"));
        Assert.Equal(("ab", true), Run(new[] { "zz", "EN" }, "ab", "E", "Nzz"));
        Assert.Equal(("hello world", false), Run(Array.Empty<string>(), "hello", " world"));
    }

    [Theory]
    [InlineData("The end. Next", ". ", "The end")]
    [InlineData("aaab", "aab", "a")]
    [InlineData("stop at once", "stop", "")]
    public void TheEarliestStopWins(string text, string stop, string expected)
    {
        // Fed one character at a time and all at once, the result is the same.
        Assert.Equal((expected, true), Run(new[] { stop, "zzzz" }, text.Select(c => c.ToString()).ToArray()));
        Assert.Equal((expected, true), Run(new[] { "zzzz", stop }, text));
    }
}
