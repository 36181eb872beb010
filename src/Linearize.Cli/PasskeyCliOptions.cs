using System.CommandLine;
using System.Globalization;
using Linearize.Evaluation.Passkey;

namespace Linearize.Cli;

/// <summary>The options that make passkey samples, shared by <c>data passkey</c> and <c>eval passkey</c> (docs/EVALUATION.md §4).</summary>
public sealed class PasskeyCliOptions
{
    public Option<string> Lengths { get; } = new("--lengths")
    {
        Description = "Comma-separated sample lengths in the model's tokens, prompt and answer together (BOS included)",
        DefaultValueFactory = _ => "256,512,1024",
    };

    public Option<string> Depths { get; } = new("--depths")
    {
        Description = "Comma-separated needle depths in [0, 1]: the share of the filler before the needle (0 = right after BOS, 1 = right before the question)",
        DefaultValueFactory = _ => "0,0.25,0.5,0.75,1",
    };

    public Option<int> SamplesPerCell { get; } = new("--samples-per-cell")
    {
        Description = "Samples for each length × depth (sample i of a length keeps its filler and pass key at every depth)",
        DefaultValueFactory = _ => new PasskeyOptions().SamplesPerCell,
    };

    public Option<int> Digits { get; } = new("--digits")
    {
        Description = "Digits of the pass key (1–9)",
        DefaultValueFactory = _ => new PasskeyOptions().Digits,
    };

    public Option<int> Seed { get; } = new("--seed")
    {
        Description = "Random seed: picks the pass keys and where in the text each filler starts",
        DefaultValueFactory = _ => 0,
    };

    public Option<string?> Text { get; } = new("--text")
    {
        Description = $"Plain text to take filler sentences from (default: the TinyStories excerpt, {SampleText.RelativePath})",
    };

    public IEnumerable<Option> All => new Option[] { Lengths, Depths, SamplesPerCell, Digits, Seed, Text };

    public void AddTo(Command command)
    {
        foreach (var o in All)
            command.Add(o);
    }

    /// <summary>The first of these options given on the command line, or null.</summary>
    public string? FirstGiven(ParseResult r) => All.FirstOrDefault(o => r.GetResult(o) is { Implicit: false })?.Name;

    public PasskeyOptions Parse(ParseResult r)
    {
        var o = new PasskeyOptions
        {
            Lengths = Split<int>(r.GetValue(Lengths)!, "--lengths", x => int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null),
            Depths = Split<double>(r.GetValue(Depths)!, "--depths", x => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null),
            SamplesPerCell = r.GetValue(SamplesPerCell),
            Digits = r.GetValue(Digits),
            Seed = r.GetValue(Seed),
        };
        o.Validate();
        return o;
    }

    /// <summary>The filler text: --text, or the samples excerpt.</summary>
    public FillerText ReadText(ParseResult r)
    {
        string path = r.GetValue(Text) ?? SampleText.Find()
            ?? throw new LinearizeException($"--text: no text given and {SampleText.RelativePath} is not beside this linearize (an installed tool); give --text FILE");
        return FillerText.Read(path);
    }

    public string? TextPath(ParseResult r) => r.GetValue(Text) ?? SampleText.Find();

    private static T[] Split<T>(string value, string flag, Func<string, T?> parse) where T : struct =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => parse(x) ?? throw new LinearizeException($"{flag}: '{x}' is not a number")).ToArray();
}
