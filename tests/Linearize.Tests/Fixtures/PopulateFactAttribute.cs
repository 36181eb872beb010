using Linearize.Inference;

namespace Linearize.Tests.Fixtures;

/// <summary>A test of backing reserved memory on request (<c>MADV_POPULATE_WRITE</c>): skipped, with the reason, where
/// the kernel does not offer it — never passed without running.</summary>
public sealed class PopulateFactAttribute : FactAttribute
{
    public PopulateFactAttribute()
    {
        if (!FloatBuffer.CanPopulate)
            Skip = "this kernel does not back reserved memory on request (MADV_POPULATE_WRITE needs Linux 5.14 or later)";
    }
}
