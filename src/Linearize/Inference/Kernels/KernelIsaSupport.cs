using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Linearize.Inference.Kernels;

/// <summary>Which <see cref="KernelIsa"/> levels this CPU supports.</summary>
public static class KernelIsaSupport
{
    public static bool IsSupported(KernelIsa isa) => isa switch
    {
        KernelIsa.Scalar => true,
        KernelIsa.Avx2 => Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated,
        KernelIsa.Avx512 => Avx512F.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated,
        _ => false,
    };

    /// <summary>The widest level this CPU runs.</summary>
    public static KernelIsa Best =>
        IsSupported(KernelIsa.Avx512) ? KernelIsa.Avx512 : IsSupported(KernelIsa.Avx2) ? KernelIsa.Avx2 : KernelIsa.Scalar;

    public static string Name(KernelIsa isa) => isa switch
    {
        KernelIsa.Avx512 => "avx512",
        KernelIsa.Avx2 => "avx2",
        _ => "scalar",
    };
}
