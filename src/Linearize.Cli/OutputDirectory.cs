using System.CommandLine;

namespace Linearize.Cli;

/// <summary>
/// The one check every command that writes a directory makes before it starts: <c>--out</c> is not a file, is not,
/// does not contain and is not inside any input (so a model is never overwritten by its own conversion), and is empty
/// unless <c>--overwrite</c> says to replace what is there.
/// </summary>
public static class OutputDirectory
{
    public static Option<bool> OverwriteOption() => new("--overwrite")
    {
        Description = "Replace the contents of a non-empty --out (never allowed when --out is, contains or is inside an input)",
    };

    /// <summary>Validates <paramref name="outDir"/> against <paramref name="inputs"/> (null entries ignored); with
    /// <paramref name="overwrite"/> an existing non-empty directory is emptied; with <paramref name="reuse"/> (a resume)
    /// its contents are kept.</summary>
    public static void Prepare(string outDir, bool overwrite, bool reuse, params string?[] inputs) =>
        Prepare(outDir, overwrite, reuse, replacedWhole: false, inputs);

    /// <summary>As above; with <paramref name="replacedWhole"/> (the command writes --out as one staged directory that
    /// replaces the old one in a rename) an existing directory is left as it is until then, so a kill at any moment
    /// leaves the complete earlier result or nothing.</summary>
    public static void Prepare(string outDir, bool overwrite, bool reuse, bool replacedWhole, params string?[] inputs)
    {
        if (File.Exists(outDir))
            throw new LinearizeException($"{outDir}: exists and is a file; --out must be a directory");
        string output = Normalize(outDir);
        foreach (var input in inputs)
        {
            if (string.IsNullOrEmpty(input))
                continue;
            string path = Normalize(input);
            if (path == output || IsInside(output, path) || IsInside(path, output))
                throw new LinearizeException($"{outDir}: --out must not be, contain or be inside the input {input}");
        }

        // What a killed run left (staging directories, temporary files) is removed before anything else looks.
        var stale = Linearize.Checkpoints.StagedDirectory.RemoveStale(outDir);
        if (stale.Count > 0)
            Console.Error.WriteLine($"note: removed {stale.Count} leftover{(stale.Count == 1 ? "" : "s")} of an interrupted run: " +
                                    string.Join(", ", stale.Select(Path.GetFileName)));
        if (reuse || !Directory.Exists(outDir) || !Directory.EnumerateFileSystemEntries(outDir).Any())
            return;
        if (!overwrite)
            throw new LinearizeException($"{outDir}: is not empty; choose another --out, or pass --overwrite to replace its contents");
        if (replacedWhole)
            return;
        foreach (var dir in Directory.EnumerateDirectories(outDir))
            Directory.Delete(dir, recursive: true);
        foreach (var file in Directory.EnumerateFiles(outDir))
            File.Delete(file);
    }

    private static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    /// <summary>True when <paramref name="path"/> lies strictly inside directory <paramref name="directory"/>.</summary>
    private static bool IsInside(string path, string directory) =>
        path.StartsWith(directory + Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
