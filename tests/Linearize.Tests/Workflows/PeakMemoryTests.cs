using System.Runtime.InteropServices;
using Linearize.Workflows.Benchmarks;

namespace Linearize.Tests.Workflows;

/// <summary>The peak resident set follows what the process touches, and a reset starts it again from the present.</summary>
[Collection("Torch")] // alone: another test allocating meanwhile would move the peak
public sealed unsafe class PeakMemoryTests
{
    [Fact]
    public void PeakRisesWithTouchedMemoryAndResets()
    {
        if (!OperatingSystem.IsLinux())
            return;
        const long bytes = 256L << 20;
        byte* block = (byte*)NativeMemory.Alloc((nuint)bytes);
        long before;
        try
        {
            Assert.True(PeakMemory.Reset());
            before = PeakMemory.Bytes();
            for (long i = 0; i < bytes; i += 4096)
                block[i] = 1; // touch every page
            Assert.True(PeakMemory.Bytes() >= before + bytes * 3 / 4);
        }
        finally
        {
            NativeMemory.Free(block);
        }

        // Freed (a large block goes back to the system), then reset: the peak is the present again, below the old one.
        Assert.True(PeakMemory.Reset());
        Assert.True(PeakMemory.Bytes() < before + bytes / 2);
    }
}
