using System.Runtime.Intrinsics.X86;

namespace Linearize.Tests.Fixtures;

/// <summary>A test of the AVX-VNNI kernels: skipped, with the reason, on a CPU without AVX-VNNI — never passed without
/// running.</summary>
public sealed class VnniFactAttribute : FactAttribute
{
    public VnniFactAttribute()
    {
        if (!AvxVnni.IsSupported)
            Skip = "this CPU has no AVX-VNNI";
    }
}
