using System.Diagnostics;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>The machine code checked in as C# (<c>BFloat16TileCode.g.cs</c>) is what <c>bf16_tile.S</c> assembles to
/// today: the script that generated it is re-run into a temporary file and the two must be identical, so an edit
/// to the assembly that was not regenerated (or a hand edit of the bytes) fails here.</summary>
public sealed class NativeKernelBytesTests
{
    [AssemblerFact]
    public void CheckedInBytesAreTheAssembledSource()
    {
        string root = Path.GetDirectoryName(SampleData.Root)!;
        string checkedIn = Path.Combine(root, "src", "Linearize", "Inference", "Kernels", "Native", "BFloat16TileCode.g.cs");
        using var dir = new TempDir();
        string fresh = Path.Combine(dir.Path, "BFloat16TileCode.g.cs");
        var start = new ProcessStartInfo("bash", new[] { Path.Combine(root, "build", "assemble-kernels.sh"), fresh })
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"build/assemble-kernels.sh failed: {errors}");
        Assert.True(File.ReadAllText(checkedIn) == File.ReadAllText(fresh),
            "BFloat16TileCode.g.cs differs from what bf16_tile.S assembles to: run build/assemble-kernels.sh and commit the result");
    }
}
