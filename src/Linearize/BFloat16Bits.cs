using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Linearize;

/// <summary>bfloat16 as stored (16-bit patterns, the high half of a float32): widened in bulk by the checkpoint readers
/// and the engine's prefill kernels alike.</summary>
public static class BFloat16Bits
{
    /// <summary>bfloat16 bits → float32 (the bits shifted into the high half: exact, NaNs kept), 32 at a time where
    /// vectors allow.</summary>
    public static void Widen(ReadOnlySpan<ushort> bits, Span<float> destination)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, uint>(destination);
            for (; c + Vector512<ushort>.Count <= bits.Length; c += Vector512<ushort>.Count)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Create(bits.Slice(c, Vector512<ushort>.Count)));
                Vector512.ShiftLeft(lo, 16).CopyTo(d.Slice(c));
                Vector512.ShiftLeft(hi, 16).CopyTo(d.Slice(c + Vector512<uint>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, uint>(destination);
            for (; c + Vector256<ushort>.Count <= bits.Length; c += Vector256<ushort>.Count)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(bits.Slice(c, Vector256<ushort>.Count)));
                Vector256.ShiftLeft(lo, 16).CopyTo(d.Slice(c));
                Vector256.ShiftLeft(hi, 16).CopyTo(d.Slice(c + Vector256<uint>.Count));
            }
        }

        for (; c < bits.Length; c++)
            destination[c] = BitConverter.UInt32BitsToSingle((uint)bits[c] << 16);
    }
}
