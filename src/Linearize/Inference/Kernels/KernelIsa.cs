namespace Linearize.Inference.Kernels;

/// <summary>The instruction set a kernel runs with. The engine uses <see cref="KernelIsaSupport.Best"/>; tests force each lower level so
/// every path is compared with the naive twin on the machine at hand.</summary>
public enum KernelIsa
{
    /// <summary>Plain scalar loops (any CPU).</summary>
    Scalar,

    /// <summary>256-bit vectors with FMA (AVX2).</summary>
    Avx2,

    /// <summary>512-bit vectors (AVX-512 F/BW).</summary>
    Avx512,
}
