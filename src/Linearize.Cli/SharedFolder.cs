namespace Linearize.Cli;

/// <summary>
/// Where the shared material (models, data) lives: <c>$LINEARIZE_SHARED</c>, or <c>../shared</c> beside the
/// repository this executable was built in — found from the executable, not the current directory, so a command
/// gives the same answer from wherever it is run. The tests locate it the same way.
/// </summary>
public static class SharedFolder
{
    public const string EnvironmentVariable = "LINEARIZE_SHARED";

    /// <summary>The shared folder, or null when neither the variable nor a <c>../shared</c> beside the repository exists.</summary>
    public static string? Find()
    {
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(env))
            return Directory.Exists(env) ? Path.GetFullPath(env) : null;
        // The executable first; the current directory second, for a linearize copied out of its repository.
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (!File.Exists(Path.Combine(dir.FullName, "Linearize.slnx")))
                    continue;
                string shared = Path.Combine(dir.FullName, "..", "shared");
                if (Directory.Exists(shared))
                    return Path.GetFullPath(shared);
                break;
            }

        return null;
    }
}
