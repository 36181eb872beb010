// Repeats by design (what `duplicates` lists here): Vec256.cs is the same trait for the other width, member by member —
// the one place each width is written, as ggml's per-ISA GGML_F32_VEC blocks are.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>AVX-512: 16 float32 lanes, 32 registers (<see cref="KernelIsa.Avx512"/>).</summary>
internal readonly unsafe struct Vec512 : IFloatVector<Vec512>
{
    public readonly Vector512<float> Value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vec512(Vector512<float> value) => Value = value;

    public static int Count => Vector512<float>.Count;

    public static int Registers => 32;

    public static Vec512 Zero
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => new(Vector512<float>.Zero);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 Load(float* p) => new(Vector512.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 LoadBFloat16(ushort* p) =>
        new(Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 LoadInt8(sbyte* p) => new(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(p))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 Broadcast(float value) => new(Vector512.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 FusedMultiplyAdd(Vec512 a, Vec512 b, Vec512 c) => new(Vector512.FusedMultiplyAdd(a.Value, b.Value, c.Value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 operator +(Vec512 a, Vec512 b) => new(a.Value + b.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec512 operator *(Vec512 a, Vec512 b) => new(a.Value * b.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vec512 v) => Vector512.Sum(v.Value);
}
