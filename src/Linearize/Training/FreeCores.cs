using System.Globalization;

namespace Linearize.Training;

/// <summary>
/// How many cores other work leaves idle, for choosing libtorch's thread count before training. libtorch's OpenMP
/// threads wait for each other at every parallel operation and spin while they wait (libgomp's default), so a thread
/// that shares its core with another busy process stalls its peers for whole time slices: beside one busy process a
/// 2-thread run on 2 cores trained at a third of its speed, where 1 thread kept nearly all of it
/// (docs/RESULTS.md, "Training beside other work").
/// </summary>
public static class FreeCores
{
    /// <summary>
    /// Idle cores over <paramref name="window"/>, from the idle and iowait time <c>/proc/stat</c> counts across all
    /// cores (proc(5)), rounded to the nearest core, at least 1 and at most <see cref="Environment.ProcessorCount"/>.
    /// Without <c>/proc/stat</c> (not Linux) every core counts as free.
    /// </summary>
    public static int Measure(TimeSpan window)
    {
        int cores = Environment.ProcessorCount;
        if (IdleAndTotal() is not var (idle0, total0))
            return cores;
        Thread.Sleep(window);
        if (IdleAndTotal() is not var (idle1, total1) || total1 <= total0)
            return cores;
        double idleCores = (double)(idle1 - idle0) / (total1 - total0) * cores;
        return Math.Clamp((int)Math.Round(idleCores), 1, cores);
    }

    /// <summary>The first line of /proc/stat: cumulative idle (idle + iowait) and total clock ticks of all cores.</summary>
    private static (long Idle, long Total)? IdleAndTotal()
    {
        try
        {
            string? line = File.ReadLines("/proc/stat").FirstOrDefault();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
                return null;
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                .Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
            // user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
            long total = fields.Take(8).Sum();
            return (fields[3] + fields[4], total);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
