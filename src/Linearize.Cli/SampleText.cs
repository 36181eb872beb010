namespace Linearize.Cli;

/// <summary>
/// The TinyStories excerpt in the repository's <c>samples/</c> (samples/README.md), the default text of commands that
/// need some: found beside the executable's repository, as <see cref="SharedFolder"/> finds <c>../shared</c>, so a
/// bare clone works; an installed tool has no repository and must be given the text.
/// </summary>
public static class SampleText
{
    public const string RelativePath = "samples/tinystories/val-excerpt.txt";

    /// <summary>The excerpt's path, or null outside a repository.</summary>
    public static string? Find()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (!File.Exists(Path.Combine(dir.FullName, "Linearize.slnx")))
                    continue;
                string path = Path.Combine(dir.FullName, RelativePath);
                if (File.Exists(path))
                    return path;
                break;
            }

        return null;
    }
}
