namespace Linearize.Generation;

/// <summary>
/// Finds stop strings in streamed text (OpenAI's <c>stop</c>): text is released only once no stop string can still
/// begin inside it, so a stop split across tokens is never half-emitted; the stop string itself is never emitted.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private readonly System.Text.StringBuilder _pending = new();

    public StopSequenceMatcher(IEnumerable<string> stops) => _stops = stops.Where(s => s.Length > 0).Distinct().ToArray();

    /// <summary>True once a stop string was found; later pushes return nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds <paramref name="text"/>; returns the text that is now safe to emit.</summary>
    public string Push(string text)
    {
        if (Stopped)
            return "";
        if (_stops.Length == 0)
            return text;
        _pending.Append(text);
        string s = _pending.ToString();
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = s.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }

        if (first >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return s[..first];
        }

        // Hold back the longest tail that is a proper prefix of some stop string.
        int hold = 0;
        foreach (var stop in _stops)
            for (int k = Math.Min(stop.Length - 1, s.Length); k > hold; k--)
                if (string.CompareOrdinal(s, s.Length - k, stop, 0, k) == 0)
                {
                    hold = k;
                    break;
                }

        _pending.Clear();
        _pending.Append(s, s.Length - hold, hold);
        return s[..^hold];
    }

    /// <summary>The held-back text at the end of the stream (no stop string completed).</summary>
    public string Flush()
    {
        if (Stopped)
            return "";
        string s = _pending.ToString();
        _pending.Clear();
        return s;
    }
}
