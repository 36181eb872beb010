using Linearize.Inference.Kernels;

namespace Linearize.Tests.Fixtures;

/// <summary>A theory over kernels of one <see cref="KernelIsa"/>: skipped, with the reason, on a CPU that lacks it —
/// never passed without running (docs/CORRECTNESS.md: every kernel against its naive twin on each ISA).</summary>
public sealed class IsaTheoryAttribute : TheoryAttribute
{
    public IsaTheoryAttribute(KernelIsa isa)
    {
        if (!KernelIsaSupport.IsSupported(isa))
            Skip = $"this CPU does not run {KernelIsaSupport.Name(isa)} kernels (best: {KernelIsaSupport.Name(KernelIsaSupport.Best)})";
    }
}
