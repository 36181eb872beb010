using Linearize.Inference.Kernels.Native;

namespace Linearize.Tests.Fixtures;

/// <summary>A test of the native 512-bit <c>vpdpbusd</c> Q8 tile: skipped, with the reason, where it does not run (not
/// Linux x64, or no AVX512_VNNI) — never passed without running.</summary>
public sealed class NativeQ8FactAttribute : FactAttribute
{
    public NativeQ8FactAttribute()
    {
        if (!NativeQ8Tiles.IsSupported)
            Skip = NativeQ8Tiles.CpuHasAvx512Vnni
                ? "this CPU has AVX512_VNNI but the native tile did not load (not Linux x64, or no executable pages)"
                : "this CPU has no AVX512_VNNI (or the runtime's AVX-512 is off)";
    }
}
