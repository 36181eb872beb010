using Linearize.Inference.Kernels.Native;

namespace Linearize.Tests.Fixtures;

/// <summary>A test of the native <c>vdpbf16ps</c> tiles: skipped, with the reason, where they do not run (not Linux x64,
/// or no AVX512_BF16) — never passed without running.</summary>
public sealed class NativeBFloat16FactAttribute : FactAttribute
{
    public NativeBFloat16FactAttribute()
    {
        if (!NativeBFloat16Tiles.IsSupported)
            Skip = NativeBFloat16Tiles.CpuHasAvx512Bf16
                ? "this CPU has AVX512_BF16 but the native tiles did not load (not Linux x64, or no executable pages)"
                : "this CPU has no AVX512_BF16";
    }
}
