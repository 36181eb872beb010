using System.CommandLine;
using System.Text.Json;
using Linearize.Inference;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary>
/// <c>linearize bench memory</c>: this machine's read bandwidth with the engine's threads (the floor decoding is
/// measured against) and, per round, the load latency and the cache lines a reader must keep in flight to reach that
/// bandwidth. Rounds show how both drift on a shared machine.
/// </summary>
public static class BenchMemoryCommand
{
    private sealed record Round(double GbPerSecond, double LatencyNs, double LinesInFlightPerThread);

    public static Command Create()
    {
        var threads = new Option<int?>("--threads") { Description = "Reading threads (default: one per core)" };
        var size = new Option<int>("--mib") { Description = "Buffer size in MiB for each probe (far above the caches)", DefaultValueFactory = _ => 1024 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds of both probes, one after the other (a shared machine's memory speed drifts)", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("memory",
            "Read bandwidth of this machine with the engine's threads (STREAM-style, best of a few passes: the floor a memory-bound decoding step " +
            "is measured against), the latency of one load that misses every cache (a random chain through the buffer), and by Little's law the " +
            "cache lines each thread keeps in flight to read at that bandwidth (GB/s × latency ÷ 64 B ÷ threads).");
        command.Add(threads);
        command.Add(size);
        command.Add(rounds);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            int t = r.GetValue(threads) ?? Environment.ProcessorCount, mib = r.GetValue(size), n = r.GetValue(rounds);
            if (t < 1)
                throw new LinearizeException("--threads must be at least 1");
            if (mib < 64)
                throw new LinearizeException("--mib must be at least 64");
            if (n < 1)
                throw new LinearizeException("--rounds must be at least 1");
            long bytes = (long)mib << 20;
            using var stop = Interruption.Listen("stopping after this round");
            using var chain = new MemoryLatency(bytes);
            var measured = new List<Round>();
            for (int i = 0; i < n && !stop.Requested; i++)
            {
                double bandwidth = MemoryBandwidth.Measure(t, bytes, passes: 3);
                double latency = chain.MeasureNanoseconds();
                var round = new Round(bandwidth / 1e9, latency, bandwidth * latency * 1e-9 / MemoryLatency.LineBytes / t);
                measured.Add(round);
                if (!r.GetValue(json))
                    ConsoleUi.Out.MarkupLine(Markup.Escape(
                        $"round {i + 1}: read bandwidth {round.GbPerSecond:F1} GB/s, latency {round.LatencyNs:F0} ns, {round.LinesInFlightPerThread:F0} lines in flight per thread"));
            }

            if (measured.Count == 0)
                return stop.ExitCode;
            var gb = measured.Select(x => x.GbPerSecond).Order().ToArray();
            double median = gb[gb.Length / 2];
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    threads = t,
                    mib,
                    gb_per_s = Math.Round(median, 2),
                    rounds = measured.Select(x => new
                    {
                        gb_per_s = Math.Round(x.GbPerSecond, 2),
                        latency_ns = Math.Round(x.LatencyNs, 1),
                        lines_in_flight_per_thread = Math.Round(x.LinesInFlightPerThread, 1),
                    }),
                }));
            }
            else if (measured.Count > 1)
            {
                ConsoleUi.Out.MarkupLine(Markup.Escape($"read bandwidth: {gb[0]:F1}–{gb[^1]:F1} GB/s, median {median:F1} ({t} threads, {mib} MiB buffer, {measured.Count} rounds)"));
            }

            return stop.Requested ? stop.ExitCode : 0;
        }));
        return command;
    }
}
