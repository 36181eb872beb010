using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// A prefill block's activation rows <c>x [T, cols]</c> transposed into panels of up to <see cref="PanelTokens"/>
/// tokens, each <c>[cols, width]</c>: for every column the panel's tokens side by side, so <see cref="PanelTile"/> loads
/// one column of 16 tokens as one vector and multiplies it by one broadcast weight. A panel's width is its token
/// count rounded up to 16 (the padding is zero). Filled once per product, before the threads split the weight rows,
/// as <see cref="Q8Activations"/> is; a reusable buffer that grows and never shrinks.
/// </summary>
public sealed unsafe class TokenPanels : IDisposable
{
    /// <summary>Most tokens per panel: three 16-lane vectors, the width of <see cref="PanelTile"/>'s register tile.</summary>
    public const int PanelTokens = 48;

    private const int Lanes = 16;
    private float* _data;
    private long _capacity;

    /// <summary>Tokens (activation rows) held.</summary>
    public int Count { get; private set; }

    /// <summary>Values per token.</summary>
    public int Cols { get; private set; }

    /// <summary>Panels: <c>⌈Count / 48⌉</c>.</summary>
    public int Panels => (Count + PanelTokens - 1) / PanelTokens;

    /// <summary>Lanes of panel <paramref name="p"/> (a multiple of 16; tokens past <see cref="Count"/> are zero).</summary>
    public int Width(int p) => Math.Min(PanelTokens, (Count - p * PanelTokens + Lanes - 1) / Lanes * Lanes);

    /// <summary>Panel <paramref name="p"/>: <c>[Cols, Width(p)]</c> floats, its first token in lane 0.</summary>
    internal float* Panel(int p) => _data + (long)p * PanelTokens * Cols;

    /// <summary>Transposes <paramref name="count"/> rows of <paramref name="cols"/> values at <paramref name="x"/>
    /// (stride <paramref name="xStride"/> floats).</summary>
    public void Fill(float* x, int xStride, int count, int cols)
    {
        Prepare(count, cols);
        FillRows(x, xStride, 0, count);
    }

    /// <summary>Sizes the buffer for <paramref name="count"/> rows of <paramref name="cols"/> values and zeroes the last
    /// panel's padding, to be filled by <see cref="FillRows"/> (the engine splits a block's rows across threads).</summary>
    internal void Prepare(int count, int cols)
    {
        if (count < 0 || cols < 1)
            throw new ArgumentException($"cannot transpose {count} rows of {cols} values");
        Count = count;
        Cols = cols;
        long values = (long)Math.Max(1, Panels) * PanelTokens * cols;
        if (values > _capacity)
        {
            NativeMemory.AlignedFree(_data);
            _data = (float*)NativeMemory.AlignedAlloc((nuint)(values * sizeof(float)), 64);
            _capacity = values;
        }

        if (count == 0)
            return;
        int last = Panels - 1, width = Width(last), used = count - last * PanelTokens;
        float* panel = Panel(last);
        if (used < width)
            for (int c = 0; c < cols; c++)
                new Span<float>(panel + (long)c * width + used, width - used).Clear();
    }

    /// <summary>Transposes rows <c>[from, to)</c> after <see cref="Prepare"/>: 8 × 8 blocks in registers where the
    /// CPU has 256-bit vectors, element by element elsewhere and at the edges. Threads should split the rows at panel
    /// boundaries (multiples of <see cref="PanelTokens"/>): a cache line of a panel holds 16 tokens of one column, so
    /// two threads filling one panel would pass its lines back and forth.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void FillRows(float* x, int xStride, int from, int to)
    {
        int cols = Cols;
        for (int t0 = from; t0 < to;)
        {
            // The part of one panel in [from, to), column block by column block so each block of the panel is written
            // whole while it is in L1.
            int p = t0 / PanelTokens, width = Width(p), t1 = Math.Min(to, (p + 1) * PanelTokens);
            float* panel = Panel(p) + (t0 - p * PanelTokens);
            float* src = x + (long)t0 * xStride;
            int groups = Avx.IsSupported ? (t1 - t0) / 8 : 0, c = 0;
            for (; c + 8 <= cols && groups > 0; c += 8)
                for (int g = 0; g < groups; g++)
                    Transpose8(src + (long)g * 8 * xStride + c, xStride, panel + (long)c * width + g * 8, width);
            for (int t = t0; t < t1; t++)
            {
                bool done = t - t0 < groups * 8; // its first c columns were transposed above
                float* dst = panel + (t - t0);
                float* row = x + (long)t * xStride;
                for (int k = done ? c : 0; k < cols; k++)
                    dst[(long)k * width] = row[k];
            }

            t0 = t1;
        }
    }

    /// <summary>Token <paramref name="t"/>'s value at column <paramref name="c"/>, read back from its panel.</summary>
    public float Get(int t, int c)
    {
        if ((uint)t >= (uint)Count || (uint)c >= (uint)Cols)
            throw new ArgumentOutOfRangeException(nameof(t), $"token {t}, column {c} of [{Count}, {Cols}]");
        int p = t / PanelTokens;
        return Panel(p)[(long)c * Width(p) + t - p * PanelTokens];
    }

    /// <summary>Eight rows × eight columns at <paramref name="src"/> (row stride <paramref name="srcStride"/>) written as
    /// eight columns × eight rows at <paramref name="dst"/> (stride <paramref name="dstStride"/>): unpack pairs, then
    /// quads, then swap 128-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8(float* src, int srcStride, float* dst, int dstStride)
    {
        var r0 = Vector256.Load(src);
        var r1 = Vector256.Load(src + srcStride);
        var r2 = Vector256.Load(src + 2L * srcStride);
        var r3 = Vector256.Load(src + 3L * srcStride);
        var r4 = Vector256.Load(src + 4L * srcStride);
        var r5 = Vector256.Load(src + 5L * srcStride);
        var r6 = Vector256.Load(src + 6L * srcStride);
        var r7 = Vector256.Load(src + 7L * srcStride);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(dst);
        Avx.Permute2x128(u1, u5, 0x20).Store(dst + dstStride);
        Avx.Permute2x128(u2, u6, 0x20).Store(dst + 2L * dstStride);
        Avx.Permute2x128(u3, u7, 0x20).Store(dst + 3L * dstStride);
        Avx.Permute2x128(u0, u4, 0x31).Store(dst + 4L * dstStride);
        Avx.Permute2x128(u1, u5, 0x31).Store(dst + 5L * dstStride);
        Avx.Permute2x128(u2, u6, 0x31).Store(dst + 6L * dstStride);
        Avx.Permute2x128(u3, u7, 0x31).Store(dst + 7L * dstStride);
    }

    ~TokenPanels() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        NativeMemory.AlignedFree(_data);
        _data = null;
        _capacity = 0;
    }
}
