using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels.Native;

/// <summary>
/// The 512-bit <c>vpdpbusd</c> register tile of <c>q8_tile.S</c>, ready to call: 4 Q8 weight rows × 4 Q8 activation
/// rows over their whole blocks, bit for bit what <see cref="MatVecQ8"/>'s managed kernel computes for each pair (same
/// lanes, same order; the caller adds the partial last block as the managed kernel does). Loaded once per process, and
/// only on Linux x64 when CPUID reports AVX512_VNNI (leaf 7, ECX bit 11) beside AVX-512 F/BW: .NET 10's VNNI
/// intrinsics (<c>AvxVnni</c>) stop at 256 bits. Elsewhere <see cref="IsSupported"/> is false and the managed kernel runs.
/// </summary>
/// <remarks>The tile offsets the activations to unsigned bytes (<c>x + 128</c>) and starts each accumulator at
/// <c>−Σ 128·w</c>, computed once per weight row and shared by the 4 tokens, so a 64-byte step of one (row, token) is
/// one <c>vpdpbusd</c>, a conversion, a multiply and an FMA, where the managed 256-bit kernel spends ten instructions
/// (magnitudes, signs, products, conversion, two scalings, per 32 bytes). Measured on Zen 5 (one core, [256, 768] Q8 in
/// L2, 4 tokens): 210 against 113–120 GOP/s. Calls go through <c>delegate* unmanaged[SuppressGCTransition]</c>, as the
/// bfloat16 tiles do.</remarks>
internal static unsafe class NativeQ8Tiles
{
    /// <summary>Weight rows per tile.</summary>
    public const int Rows = 4;

    /// <summary>Activation rows (tokens) per tile.</summary>
    public const int Tokens = 4;

    private static readonly ExecutableCode? s_code = ExecutableCode.TryLoad(Q8TileCode.Bytes, CpuHasAvx512Vnni);
    private static readonly nint s_tile = s_code?.Address(Q8TileCode.Tile4x4) ?? 0;
    private static readonly nint s_tileOneToken = s_code?.Address(Q8TileCode.Tile4x1) ?? 0;

    /// <summary>This process runs the native tile (Linux x64 with AVX512_VNNI, and the code pages could be mapped).</summary>
    public static bool IsSupported => s_code is not null;

    /// <summary>Whether the CPU has AVX512_VNNI (and the AVX-512 state the OS must save for it).</summary>
    public static bool CpuHasAvx512Vnni =>
        X86Base.IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;

    /// <summary>
    /// <c>out[t · 4 + r]</c> = the sum over the first <paramref name="fullBlocks"/> blocks of weight row <c>r</c> (the Q8 row
    /// at <c>row + r · rowStride</c> bytes, laid out as <paramref name="layout"/> says) times activation row <c>t</c> (at
    /// <c>x + t · xStride</c>, scales at <c>dx + t · dxStride</c>), for <c>r, t &lt; 4</c>. Nothing past those blocks is read.
    /// </summary>
    public static void Tile(byte* row, long rowStride, in Q8RowLayout layout, sbyte* x, long xStride, float* dx, long dxStride,
        long fullBlocks, float* output) =>
        Call(s_tile, row, rowStride, layout, x, xStride, dx, dxStride, fullBlocks, output);

    /// <summary>
    /// The 4 × 1 tile (decoding): <c>out[r]</c> = the sum over the first <paramref name="fullBlocks"/> blocks of weight
    /// row <c>r</c> (the Q8 row at <c>row + r · rowStride</c> bytes) times the one activation row at <paramref name="x"/>
    /// (scales at <paramref name="dx"/>), for <c>r &lt; 4</c>, bit for bit what <see cref="Tile"/> and the managed kernel
    /// give for that pair.
    /// </summary>
    public static void TileOneToken(byte* row, long rowStride, in Q8RowLayout layout, sbyte* x, float* dx, long fullBlocks, float* output) =>
        Call(s_tileOneToken, row, rowStride, layout, x, 0, dx, 0, fullBlocks, output);

    private static void Call(nint tile, byte* row, long rowStride, in Q8RowLayout layout, sbyte* x, long xStride, float* dx,
        long dxStride, long fullBlocks, float* output)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("the native Q8 tiles need Linux x64 with AVX512_VNNI");
        var args = new Args
        {
            W = (sbyte*)(row + layout.QuantOffset(0)),
            WStride = rowStride,
            Dw = (float*)(row + layout.ScaleOffset(0)),
            DwStride = rowStride,
            X = x,
            XStride = xStride,
            Dx = dx,
            DxStride = dxStride * sizeof(float),
            Full = fullBlocks,
            Out = output,
            Blocks = layout.Blocks,
        };
        ((delegate* unmanaged[SuppressGCTransition]<Args*, void>)tile)(&args);
    }

    /// <summary>The tile's one argument, in the field order <c>q8_tile.S</c> reads (8 bytes each; strides in bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Args
    {
        public sbyte* W;
        public long WStride;
        public float* Dw;
        public long DwStride;
        public sbyte* X;
        public long XStride;
        public float* Dx;
        public long DxStride;
        public long Full;
        public float* Out;
        public long Blocks;
    }
}
