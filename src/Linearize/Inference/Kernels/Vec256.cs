// Repeats by design (what `duplicates` lists here): Vec512.cs is the same trait for the other width, member by member —
// the one place each width is written, as ggml's per-ISA GGML_F32_VEC blocks are.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>AVX2 with FMA: 8 float32 lanes, 16 registers (<see cref="KernelIsa.Avx2"/>).</summary>
internal readonly unsafe struct Vec256 : IFloatVector<Vec256>
{
    public readonly Vector256<float> Value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vec256(Vector256<float> value) => Value = value;

    public static int Count => Vector256<float>.Count;

    public static int Registers => 16;

    public static Vec256 Zero
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => new(Vector256<float>.Zero);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 Load(float* p) => new(Vector256.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 LoadBFloat16(ushort* p) =>
        new(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load(p)), 16).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 LoadInt8(sbyte* p) => new(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 Broadcast(float value) => new(Vector256.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 FusedMultiplyAdd(Vec256 a, Vec256 b, Vec256 c) => new(Fma.MultiplyAdd(a.Value, b.Value, c.Value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 operator +(Vec256 a, Vec256 b) => new(a.Value + b.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec256 operator *(Vec256 a, Vec256 b) => new(a.Value * b.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vec256 v) => Vector256.Sum(v.Value);
}
