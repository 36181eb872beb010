using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Linearize.Checkpoints;

/// <summary>
/// Writes a whole directory so that it is complete or absent: the content goes to a hidden sibling
/// <c>.NAME.partial-PID</c>, which is renamed into place at the end. A crash leaves that sibling (and perhaps
/// <see cref="AtomicFile"/> temporaries inside it), never a half-written <c>NAME</c>; the next write of the same
/// directory removes what a dead process left (<see cref="RemoveStale"/>) and reports it.
/// </summary>
public static partial class StagedDirectory
{
    /// <summary>Runs <paramref name="write"/> on a staging directory, then puts it at <paramref name="directory"/>,
    /// replacing what is there (callers decide beforehand whether that may be replaced).</summary>
    public static void Write(string directory, Action<string> write)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        string parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(full)}.partial-{Environment.ProcessId}");
        if (Directory.Exists(staging))
            Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        FaultInjection.Point("staged-started");
        try
        {
            write(staging);
            FaultInjection.Point("staged-before-rename");
            if (Directory.Exists(full))
            {
                // Move the old one aside first so that NAME is never a mix of old and new files.
                string old = Path.Combine(parent, $".{Path.GetFileName(full)}.old-{Environment.ProcessId}");
                if (Directory.Exists(old))
                    Directory.Delete(old, recursive: true);
                Directory.Move(full, old);
                FaultInjection.Point("staged-old-moved-aside");
                Directory.Move(staging, full);
                Directory.Delete(old, recursive: true);
            }
            else
                Directory.Move(staging, full);
        }
        catch
        {
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (IOException)
            {
            }

            throw;
        }
    }

    /// <summary>
    /// Removes what interrupted writes of <paramref name="directory"/> left: staging and set-aside siblings
    /// (<c>.NAME.partial-PID</c>, <c>.NAME.old-PID</c>), the same for subdirectories written inside it, and
    /// <see cref="AtomicFile"/> temporaries (<c>*.tmp-PID-…</c>) inside it, whenever process PID is no longer running.
    /// Returns the paths removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveStale(string directory)
    {
        var removed = new List<string>();
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        string? parent = Path.GetDirectoryName(full);
        string name = Path.GetFileName(full);
        if (parent is not null && Directory.Exists(parent))
            foreach (var sibling in Directory.EnumerateDirectories(parent, $".{name}.*"))
            {
                var m = SiblingPattern().Match(Path.GetFileName(sibling));
                if (!m.Success || m.Groups["name"].Value != name || IsRunning(int.Parse(m.Groups["pid"].Value)))
                    continue;
                if (m.Groups["kind"].Value == "old" && !Directory.Exists(full))
                {
                    // Killed between moving the earlier result aside and moving the new one in: put it back.
                    Directory.Move(sibling, full);
                    removed.Add(sibling + " (restored as " + name + ")");
                    continue;
                }

                Directory.Delete(sibling, recursive: true);
                removed.Add(sibling);
            }

        if (Directory.Exists(full))
            foreach (var dir in Directory.EnumerateDirectories(full, ".*", SearchOption.AllDirectories).ToList())
            {
                var m = SiblingPattern().Match(Path.GetFileName(dir));
                if (m.Success && Directory.Exists(dir) && !IsRunning(int.Parse(m.Groups["pid"].Value)))
                {
                    Directory.Delete(dir, recursive: true);
                    removed.Add(dir);
                }
            }

        if (Directory.Exists(full))
            foreach (var file in Directory.EnumerateFiles(full, "*.tmp-*", SearchOption.AllDirectories))
            {
                var m = TempPattern().Match(Path.GetFileName(file));
                if (m.Success && !IsRunning(int.Parse(m.Groups["pid"].Value)))
                {
                    File.Delete(file);
                    removed.Add(file);
                }
            }

        return removed;
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId)
            return true;
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"^\.(?<name>.+)\.(?<kind>partial|old)-(?<pid>\d+)$")]
    private static partial Regex SiblingPattern();

    [GeneratedRegex(@"\.tmp-(?<pid>\d+)-[0-9a-f]{32}$")]
    private static partial Regex TempPattern();
}
