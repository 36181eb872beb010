using Linearize.Inference;
using Xunit;

namespace Linearize.Tests.Inference;

public class Q8RowLayoutTests
{
    /// <summary>Offsets written out by hand: 1000 columns are 32 blocks (31 whole and one of 8), two groups of 16, each
    /// 64 bytes of scales then its quants.</summary>
    [Fact]
    public void OffsetsFollowTheGroups()
    {
        var layout = new Q8RowLayout(1000);
        Assert.Equal(32, layout.Blocks);
        Assert.Equal(32 * 4 + 1000, layout.RowBytes);
        Assert.Equal(0, layout.ScaleOffset(0));
        Assert.Equal(60, layout.ScaleOffset(15));
        Assert.Equal(64, layout.QuantOffset(0));
        Assert.Equal(64 + 15 * 32, layout.QuantOffset(15));
        Assert.Equal(576, layout.ScaleOffset(16));
        Assert.Equal(576 + 64, layout.QuantOffset(16));
        Assert.Equal(576 + 64 + 15 * 32, layout.QuantOffset(31));
        Assert.Equal(layout.RowBytes, layout.QuantOffset(31) + 1000 - 31 * 32);

        // 1059 columns are 33 whole blocks and one of 3: a last group of 2 blocks, 8 bytes of scales.
        var shortLast = new Q8RowLayout(1059);
        Assert.Equal(34, shortLast.Blocks);
        Assert.Equal(8, shortLast.GroupScaleBytes(2));
        Assert.Equal(2 * 576, shortLast.ScaleOffset(32));
        Assert.Equal(2 * 576 + 4, shortLast.ScaleOffset(33));
        Assert.Equal(2 * 576 + 8, shortLast.QuantOffset(32));
        Assert.Equal(2 * 576 + 8 + 32, shortLast.QuantOffset(33));
        Assert.Equal(shortLast.RowBytes, shortLast.QuantOffset(33) + 3);
    }

    /// <summary>Every byte of a row is one block's scale or quant, each exactly once, whatever the width.</summary>
    [Fact]
    public void EveryByteBelongsToExactlyOneBlock()
    {
        foreach (int cols in new[] { 1, 31, 32, 33, 511, 512, 513, 544, 576, 1000, 1030, 2048 })
        {
            var layout = new Q8RowLayout(cols);
            var owner = new int[layout.RowBytes];
            for (int k = 0; k < layout.Blocks; k++)
            {
                for (int i = 0; i < 4; i++)
                    owner[layout.ScaleOffset(k) + i]++;
                for (int i = 0; i < Math.Min(32, cols - k * 32); i++)
                    owner[layout.QuantOffset(k) + i]++;
            }

            Assert.All(owner, n => Assert.Equal(1, n));
        }
    }

    /// <summary>Dequantizing any span of a row, across blocks and groups, gives each stored quant times its block's
    /// scale (read back through <see cref="PackedMatrix.CopyQ8Row"/>, which shares only the offsets).</summary>
    [Fact]
    public unsafe void DequantizingASpanGivesQuantTimesScale()
    {
        const int cols = 1059;
        var random = new Random(5);
        var w = Enumerable.Range(0, 2 * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var m = PackedMatrix.Pack(w, 2, cols, WeightFormat.Q8);
        var quants = new sbyte[cols];
        var scales = new float[m.BlocksPerRow];
        m.CopyQ8Row(1, quants, scales);
        foreach (var (from, n) in new[] { (0, cols), (5, 1), (31, 2), (500, 100), (1000, 59), (1058, 1) })
        {
            var got = new float[n];
            m.Q8Layout.Dequantize(m.Q8Row(1), from, got);
            for (int i = 0; i < n; i++)
                Assert.Equal(quants[from + i] * scales[(from + i) / 32], got[i]);
        }
    }

    /// <summary>A checkpoint's row length gives back its width, and a length no width has is refused.</summary>
    [Fact]
    public void RowBytesGiveBackTheWidth()
    {
        var lengths = new HashSet<long>();
        for (int cols = 1; cols <= 5000; cols++)
        {
            long bytes = new Q8RowLayout(cols).RowBytes;
            lengths.Add(bytes);
            Assert.Equal(cols, Q8RowLayout.ColsFromRowBytes(bytes));
        }

        for (long bytes = 0; bytes <= new Q8RowLayout(5000).RowBytes; bytes++)
            if (!lengths.Contains(bytes))
                Assert.Null(Q8RowLayout.ColsFromRowBytes(bytes));
    }
}
