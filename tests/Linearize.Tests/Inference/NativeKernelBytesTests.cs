using System.Diagnostics;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>The machine code checked in as C# (<c>BFloat16TileCode.g.cs</c>, <c>Q8TileCode.g.cs</c>) is what
/// <c>bf16_tile.S</c> and <c>q8_tile.S</c> assemble to today: the script that generated each is re-run into a temporary
/// file and the two must be identical, so an edit to the assembly that was not regenerated (or a hand edit of the
/// bytes) fails here.</summary>
public sealed class NativeKernelBytesTests
{
    [AssemblerTheory]
    [InlineData("bf16_tile", "BFloat16TileCode")]
    [InlineData("q8_tile", "Q8TileCode")]
    public void CheckedInBytesAreTheAssembledSource(string kernel, string generated)
    {
        string root = Path.GetDirectoryName(SampleData.Root)!;
        string checkedIn = Path.Combine(root, "src", "Linearize", "Inference", "Kernels", "Native", generated + ".g.cs");
        using var dir = new TempDir();
        string fresh = Path.Combine(dir.Path, generated + ".g.cs");
        var start = new ProcessStartInfo("bash", new[] { Path.Combine(root, "build", "assemble-kernels.sh"), kernel, fresh })
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"build/assemble-kernels.sh failed: {errors}");
        Assert.True(File.ReadAllText(checkedIn) == File.ReadAllText(fresh),
            $"{generated}.g.cs differs from what {kernel}.S assembles to: run build/assemble-kernels.sh and commit the result");
    }
}
