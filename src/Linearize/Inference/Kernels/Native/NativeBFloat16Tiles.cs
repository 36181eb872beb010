using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels.Native;

/// <summary>
/// The <c>vdpbf16ps</c> register tiles of <c>bf16_tile.S</c>, ready to call: <see cref="Rows"/> weight rows ×
/// 1 to <see cref="MaxTokens"/> activation rows, all bfloat16, giving float32 dot products in the lane order
/// <see cref="BFloat16Dot"/> defines (so the managed emulation is their bit-for-bit twin). Loaded once per process, and
/// only on Linux x64 when CPUID reports AVX512_BF16 (leaf 7, sub-leaf 1, EAX bit 5) beside AVX-512 F/BW — .NET 10 has
/// no intrinsics for it (no <c>Avx512Bf16</c>; <c>Avx10v2</c>'s BF16 operations need AVX10, which Zen 4 lacks).
/// Elsewhere <see cref="IsSupported"/> is false and <see cref="MatMulBFloat16"/> runs the managed emulation.
/// </summary>
/// <remarks>Why a 4 × 6 tile: 24 accumulators + 4 weight registers + 1 activation register of AVX-512's 32, and per 32
/// columns 10 loads feed 24 <c>vdpbf16ps</c> where 2 × 8 feeds 16. Measured on Zen 4 (one core, 512 tokens, blocks of
/// 16 rows): 360 against 310 GFLOP/s for [768, 768], 308 against 293 for [768, 2048]; reducing a token's four
/// accumulators together (transposing shuffles, the same sums) rather than one by one then took [768, 768] from 335 to
/// 378 GFLOP/s, since at 768 columns the reductions were a fifth of a tile's instructions. Calls go through <c>delegate* unmanaged[SuppressGCTransition]</c>: a tile runs for about a microsecond,
/// touches no managed memory and never blocks, so the GC transition would cost more than the call.</remarks>
internal static unsafe class NativeBFloat16Tiles
{
    /// <summary>Weight rows per tile.</summary>
    public const int Rows = 4;

    /// <summary>Most activation rows per tile.</summary>
    public const int MaxTokens = 6;

    private static readonly ExecutableCode? s_code = ExecutableCode.TryLoad(BFloat16TileCode.Bytes, CpuHasAvx512Bf16);
    private static readonly nint[] s_tiles = s_code is null ? Array.Empty<nint>() : new[]
    {
        s_code.Address(BFloat16TileCode.Tile4x1), s_code.Address(BFloat16TileCode.Tile4x2), s_code.Address(BFloat16TileCode.Tile4x3),
        s_code.Address(BFloat16TileCode.Tile4x4), s_code.Address(BFloat16TileCode.Tile4x5), s_code.Address(BFloat16TileCode.Tile4x6),
    };

    /// <summary>This process runs the native tiles (Linux x64 with AVX512_BF16, and the code pages could be mapped).</summary>
    public static bool IsSupported => s_code is not null;

    /// <summary>Whether the CPU has AVX512_BF16 (and the AVX-512 state the OS must save for it).</summary>
    public static bool CpuHasAvx512Bf16 =>
        X86Base.IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported && (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;

    /// <summary>
    /// <c>out[t · 4 + r] = Σ_c w[r][c] · x[t][c]</c> for <c>r &lt; 4</c>, <c>t &lt; tokens</c> over <paramref name="cols"/>
    /// columns: <paramref name="w"/> holds 4 row pointers, <paramref name="x"/> <paramref name="tokens"/> (1 to
    /// <see cref="MaxTokens"/>). Nothing past <paramref name="cols"/> is read.
    /// </summary>
    public static void Tile(ushort** w, ushort** x, int tokens, int cols, float* output)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("the native bfloat16 tiles need Linux x64 with AVX512_BF16");
        if ((uint)(tokens - 1) >= MaxTokens || cols < 1)
            throw new ArgumentOutOfRangeException(nameof(tokens), $"a tile of {tokens} tokens × {cols} columns");
        ((delegate* unmanaged[SuppressGCTransition]<ushort**, ushort**, long, float*, void>)s_tiles[tokens - 1])(w, x, cols, output);
    }
}
