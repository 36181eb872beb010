using System.Diagnostics;

namespace Linearize.Workflows.Benchmarks;

/// <summary>
/// The process's peak resident set (Linux <c>VmHWM</c>, which <see cref="Process.PeakWorkingSet64"/> reads), and its
/// reset, so a benchmark that measures several models in one process reports each one's own peak rather than the
/// largest so far. Resident pages of a mapped checkpoint count as they are touched.
/// </summary>
public static class PeakMemory
{
    /// <summary>Starts a new peak at the current resident set (writes <c>5</c> to <c>/proc/self/clear_refs</c>); false
    /// where the system does not offer it, and the peak then stays the process's.</summary>
    public static bool Reset()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>Peak resident bytes since the start or the last <see cref="Reset"/>.</summary>
    public static long Bytes()
    {
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return process.PeakWorkingSet64;
    }
}
