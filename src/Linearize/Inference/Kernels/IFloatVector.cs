namespace Linearize.Inference.Kernels;

/// <summary>
/// One SIMD width of float32 lanes, as static members over the runtime's vector type <typeparamref name="TV"/>
/// (<c>Vector512&lt;float&gt;</c>, <c>Vector256&lt;float&gt;</c>), so a kernel is written once as a generic method over
/// <c>TVec, TV</c> and the JIT compiles one specialised copy per width (a struct type argument: no virtual calls).
/// The kernels' locals are the runtime vectors themselves, not a wrapper struct: the JIT then folds loads into the FMAs
/// and accumulates in place, as in hand-written code. ggml's <c>GGML_F32_VEC</c> macros do the same job in C. The widening load
/// (bfloat16) lives here because it is an ISA-specific instruction; whether a row needs it is the
/// <see cref="IRowLoader"/>'s choice. (Q8 weights are not widened: <see cref="MatVecQ8"/> multiplies them as int8.)
/// </summary>
/// <remarks>Every operation is one ISA operation (fused multiply-add rounded once, the runtime's <c>Sum</c>), so a
/// generic kernel computes bit for bit what the same kernel spelled out for one width would, and every kernel of a
/// width reduces a vector in the same fixed order — the property the batch-invariant kernels rest on (docs/CORRECTNESS.md, batch invariance).</remarks>
internal unsafe interface IFloatVector<TSelf, TV> where TSelf : struct, IFloatVector<TSelf, TV> where TV : unmanaged
{
    /// <summary>float32 lanes per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Vector registers of the ISA: kernels that keep many accumulators live choose their tile by it, so
    /// a tile that would spill on AVX2's 16 registers runs only where there are 32.</summary>
    static abstract int Registers { get; }

    static abstract TV Zero { get; }

    static abstract TV Load(float* p);

    /// <summary><see cref="Count"/> bfloat16 values widened to float32 (bf16 is the top half of a float32).</summary>
    static abstract TV LoadBFloat16(ushort* p);

    static abstract TV Broadcast(float value);

    /// <summary><c>a · b + c</c> rounded once.</summary>
    static abstract TV FusedMultiplyAdd(TV a, TV b, TV c);

    static abstract TV Add(TV a, TV b);

    static abstract TV Multiply(TV a, TV b);

    /// <summary>The sum of the lanes, in the runtime's fixed order for this width.</summary>
    static abstract float Sum(TV v);
}
