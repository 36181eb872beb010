using System.Runtime.CompilerServices;

namespace Linearize.Inference.Kernels;

/// <summary>
/// Decodes consecutive weights of a packed row into float32 vectors of any width of
/// <see cref="IFloatVector{TSelf, TV}"/>. A struct per format so the JIT specialises each dot-product kernel for it
/// (<see cref="MatVec"/>): float32 is a plain load; bfloat16 is the vector's widening load.
/// </summary>
internal unsafe interface IRowLoader
{
    /// <summary>Bytes per stored weight.</summary>
    static abstract int ElementSize { get; }

    static abstract TV Load<TVec, TV>(void* row, int index) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged;

    static abstract float Load1(void* row, int index);
}

internal unsafe struct Float32Rows : IRowLoader
{
    public static int ElementSize => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Load<TVec, TV>(void* row, int index) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged => TVec.Load((float*)row + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int index) => ((float*)row)[index];
}

internal unsafe struct BFloat16Rows : IRowLoader
{
    public static int ElementSize => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Load<TVec, TV>(void* row, int index) where TVec : struct, IFloatVector<TVec, TV> where TV : unmanaged => TVec.LoadBFloat16((ushort*)row + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int index) => PackedMatrix.FromBFloat16(((ushort*)row)[index]);
}
