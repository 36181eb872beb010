namespace Linearize.Tests.Fixtures;

/// <summary>A test that runs GNU <c>as</c> and <c>objcopy</c>: skipped, with the reason, where they are not installed.</summary>
public sealed class AssemblerTheoryAttribute : TheoryAttribute
{
    public AssemblerTheoryAttribute()
    {
        var missing = new[] { "as", "objcopy", "objdump", "nm", "od", "bash" }.Where(tool => !OnPath(tool)).ToArray();
        if (missing.Length > 0)
            Skip = $"not on PATH: {string.Join(", ", missing)} (GNU binutils assemble the native kernels)";
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Any(dir => File.Exists(Path.Combine(dir, tool)));
}
