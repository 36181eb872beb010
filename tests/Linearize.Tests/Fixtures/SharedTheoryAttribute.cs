namespace Linearize.Tests.Fixtures;

/// <summary>A theory that needs files from ../shared; skipped with a clear message when they are missing
/// (as <see cref="SharedFactAttribute"/>).</summary>
public sealed class SharedTheoryAttribute : TheoryAttribute
{
    public SharedTheoryAttribute(params string[] paths)
    {
        var missing = paths.Where(p => !SharedData.Has(p)).ToList();
        if (SharedData.Root is null)
            Skip = $"../shared is not available; this test needs {string.Join(", ", paths)} from it (set LINEARIZE_SHARED to its path to run it)";
        else if (missing.Count > 0)
            Skip = $"missing from ../shared: {string.Join(", ", missing)}";
    }
}
