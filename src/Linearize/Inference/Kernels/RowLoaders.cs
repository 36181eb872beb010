using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Decodes consecutive weights of a packed row into float32 vectors. A struct per format so the JIT specialises each
/// dot-product kernel for it (<see cref="MatVec"/>): float32 is a plain load; bfloat16 is a zero-extension to 32 bits
/// and a 16-bit shift (bf16 is the top half of a float32).
/// </summary>
internal unsafe interface IRowLoader
{
    static abstract Vector512<float> Load512(void* row, int index);

    static abstract Vector256<float> Load256(void* row, int index);

    static abstract float Load1(void* row, int index);
}

internal unsafe struct Float32Rows : IRowLoader
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, int index) => Vector512.Load((float*)row + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, int index) => Vector256.Load((float*)row + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int index) => ((float*)row)[index];
}

internal unsafe struct BFloat16Rows : IRowLoader
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, int index) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)row + index)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, int index) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)row + index)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int index) => PackedMatrix.FromBFloat16(((ushort*)row)[index]);
}
