using System.Diagnostics;

namespace Linearize.Inference;

/// <summary>
/// Wall time per <see cref="StepRegion"/> of the forward passes an engine runs while this profile is attached
/// (<see cref="DecodeEngine.Profile"/>): where a decoding step's time goes — which product, the mixer, or the row-wise
/// work between them. Times are taken on the calling thread around each region, so a parallel product counts its
/// whole span, waiting for the slowest chunk included. Attaching it costs two timestamps per region.
/// </summary>
public sealed class StepProfile
{
    private readonly long[] _ticks = new long[Enum.GetValues<StepRegion>().Length];

    /// <summary>Forward passes (decoding steps, or prefill blocks) recorded.</summary>
    public int Passes { get; private set; }

    /// <summary>Milliseconds spent in <paramref name="region"/> over all recorded passes.</summary>
    public double Milliseconds(StepRegion region) => _ticks[(int)region] * 1000.0 / Stopwatch.Frequency;

    /// <summary>Every region's milliseconds per recorded pass, in <see cref="StepRegion"/> order.</summary>
    public IReadOnlyList<(StepRegion Region, double MsPerPass)> PerPass() =>
        Enum.GetValues<StepRegion>().Select(r => (r, Passes == 0 ? 0 : Milliseconds(r) / Passes)).ToArray();

    internal void Add(StepRegion region, long startTimestamp) => _ticks[(int)region] += Stopwatch.GetTimestamp() - startTimestamp;

    internal void EndPass() => Passes++;
}
