namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// The worst difference seen per named quantity (an output, a part of the state) over a run, measured against the
/// quantity's own scale: <c>max |expected − actual| / max(1, max |expected|)</c>, with the step where it occurred.
/// </summary>
internal sealed class MixerDrift
{
    private readonly Dictionary<string, (double Drift, string Where, double Scale)> _worst = new();

    public void Add(string part, string where, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.True(expected.Length == actual.Length, $"{part} at {where}: {expected.Length} values expected, {actual.Length} found");
        double diff = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            diff = Math.Max(diff, double.IsNaN(a) || double.IsNaN(e) ? double.PositiveInfinity : Math.Abs(e - a));
            scale = Math.Max(scale, Math.Abs(e));
        }

        double drift = diff / Math.Max(1, scale);
        if (!_worst.TryGetValue(part, out var old) || drift > old.Drift)
            _worst[part] = (drift, where, Math.Max(scale, old.Scale));
        else
            _worst[part] = old with { Scale = Math.Max(scale, old.Scale) };
    }

    public void AddStates(MixerPair pair, string where)
    {
        foreach (var (part, expected, actual) in pair.States())
            Add(part, where, expected, actual);
    }

    /// <summary>Every part within <paramref name="tolerance"/>, and the outputs not trivially small (a comparison of
    /// near-zeros would prove nothing). The message names the method, each part, its drift and where.</summary>
    public void AssertWithin(string method, double tolerance)
    {
        string report = string.Join("; ", _worst.Select(kv => $"{kv.Key} {kv.Value.Drift:E2} at {kv.Value.Where} (scale {kv.Value.Scale:G3})"));
        var bad = _worst.Where(kv => kv.Value.Drift > tolerance).Select(kv => kv.Key).ToArray();
        Assert.True(bad.Length == 0, $"{method}: {string.Join(", ", bad)} drifted beyond {tolerance:E0} — {report}");
        foreach (var (part, value) in _worst.Where(kv => kv.Key.Contains("output", StringComparison.Ordinal)))
            Assert.True(value.Scale > 0.05, $"{method}: {part} barely differs from zero (max {value.Scale:G3}); the comparison would prove nothing");
    }
}
