using System.Text.RegularExpressions;

namespace Linearize.Evaluation.Passkey;

/// <summary>
/// The filler of passkey prompts: a text cut into sentences, each a piece the needle can go before or after
/// (docs/EVALUATION.md §4). Real text rather than the papers' repeated "The grass is green…" so that a model
/// trained on stories reads something it knows, and must still find the one sentence that is not a story.
/// </summary>
public sealed partial class FillerText
{
    private FillerText(IReadOnlyList<string> sentences) => Sentences = sentences;

    public IReadOnlyList<string> Sentences { get; }

    /// <summary>Sentences of every non-empty line, split after '.', '!' or '?' (and a closing quote) at white space.</summary>
    public static FillerText FromText(string text, string source)
    {
        var sentences = new List<string>();
        foreach (var line in text.Split('\n'))
            foreach (var s in SentenceEnd().Split(line.Trim()))
                if (s.Trim() is { Length: > 0 } t)
                    sentences.Add(t);
        if (sentences.Count == 0)
            throw new LinearizeException($"{source}: no text to make filler from");
        return new FillerText(sentences);
    }

    public static FillerText Read(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: text file not found");
        return FromText(File.ReadAllText(path), path);
    }

    [GeneratedRegex("(?<=[.!?][\"'\u201d]?)\\s+")]
    private static partial Regex SentenceEnd();
}
