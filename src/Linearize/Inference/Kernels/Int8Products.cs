using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// The int8 × int8 products of one Q8 block (32 weights, 32 activations in one 256-bit register) summed in groups of
/// four into eight int32 lanes — exact, since <c>|Σ| ≤ 4 · 127²</c>. x86's multiply-add takes one unsigned operand, so
/// both implementations use ggml's trick (<c>mul_sum_i8_pairs_float</c>): the weights' magnitudes as the unsigned
/// operand and the weights' signs moved onto the activations (<c>sign(x, w)</c>), since
/// <c>|w| · sign(w)·x = w · x</c>. A struct per instruction set so <see cref="MatVecQ8"/> is specialised for each.
/// </summary>
internal interface IInt8Products
{
    /// <summary>Lane <c>k</c>: <c>Σ_{j&lt;4} w[4k+j] · x[4k+j]</c>, given <paramref name="absW"/> = <c>|w|</c>.</summary>
    static abstract Vector256<int> Sum4(Vector256<byte> absW, Vector256<sbyte> w, Vector256<sbyte> x);
}

/// <summary>AVX-VNNI: one <c>vpdpbusd</c> (u8 × s8, four products into each int32 lane, no intermediate saturation).
/// .NET exposes it at 256 bits only, so every ISA level runs the Q8 dot product on 256-bit registers.</summary>
internal struct VnniProducts : IInt8Products
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sum4(Vector256<byte> absW, Vector256<sbyte> w, Vector256<sbyte> x) =>
        AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, absW, Avx2.Sign(x, w));
}

/// <summary>Plain AVX2: <c>vpmaddubsw</c> (u8 × s8 pairs into int16) then <c>vpmaddwd</c> with ones (int16 pairs into
/// int32). A pair is at most <c>2 · 127 · 127 = 32258</c>, under int16's saturation (Q8 quants are never −128).</summary>
internal struct MaddProducts : IInt8Products
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sum4(Vector256<byte> absW, Vector256<sbyte> w, Vector256<sbyte> x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(x, w)), Vector256.Create((short)1));
}
