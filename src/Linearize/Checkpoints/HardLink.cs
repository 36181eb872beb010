using System.Runtime.InteropServices;

namespace Linearize.Checkpoints;

/// <summary>
/// Hard links for weight files a conversion or a block-wise gather passes on unchanged: the new directory names the
/// same bytes at no cost in time or disk. Safe because this project never writes a weight file in place (every write
/// goes to a temporary file that is renamed over the old name), so a change to either directory gives it a new file
/// and leaves the other's alone.
/// </summary>
public static partial class HardLink
{
    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string existing, string created);

    /// <summary>Links <paramref name="created"/> to <paramref name="existing"/>; false where the file system or
    /// platform cannot (another device, no permission, not Linux), so the caller copies instead.</summary>
    public static bool TryCreate(string existing, string created)
    {
        if (!OperatingSystem.IsLinux())
            return false;
        try
        {
            return Link(existing, created) == 0;
        }
        catch (DllNotFoundException)
        {
            return false;
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
    }
}
