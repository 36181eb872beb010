namespace Linearize.Tests.Fixtures;

/// <summary>
/// Locates the shared real material (<c>../shared</c> next to the repository, or <c>$LINEARIZE_SHARED</c>).
/// Tests that need it use <see cref="SharedFactAttribute"/> and are skipped, with the reason, when it is absent.
/// </summary>
public static class SharedData
{
    /// <summary>Found as the CLI finds it, so the tests and the commands agree on one folder.</summary>
    public static readonly string? Root = Linearize.Cli.SharedFolder.Find();

    public static string PathOf(string relative) =>
        Path.Combine(Root ?? throw new InvalidOperationException("../shared is not available"), relative);

    public static bool Has(string relative) => Root is not null && (File.Exists(PathOf(relative)) || Directory.Exists(PathOf(relative)));

    public static string Stories260KBin => PathOf("models/stories260K/stories260K.bin");
    public static string Stories260KDir => PathOf("models/stories260K");
    public static string Stories260KHf => PathOf("models/stories260K-hf");
    public static string Tok512 => PathOf("models/stories260K/tok512.bin");
    public static string TinyStoriesVal => PathOf("data/tinystories/val.txt");
}
