namespace Linearize.Tests.Fixtures;

/// <summary>
/// The material that ships in the repository's <c>samples/</c> (stories260K, its tokenizer and a TinyStories excerpt;
/// see <c>samples/README.md</c>). Unlike <see cref="SharedData"/> it is always there, so tests using it never skip.
/// </summary>
public static class SampleData
{
    public static readonly string Root = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Linearize.slnx")))
                return Path.Combine(dir.FullName, "samples");
        }

        throw new InvalidOperationException($"no Linearize.slnx above {AppContext.BaseDirectory}: cannot find samples/");
    }

    public static string Stories260KDir => Path.Combine(Root, "stories260K");
    public static string TinyStoriesExcerpt => Path.Combine(Root, "tinystories", "val-excerpt.txt");
    public static string Readme => Path.Combine(Root, "README.md");
}
