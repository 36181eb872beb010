using System.Text;
using Linearize.Tokenization;

namespace Linearize.Data;

/// <summary>Plain-text training data: each document is BOS + text + EOS and every token is labelled.</summary>
public static class TextDataset
{
    /// <summary>How a text file is cut into documents.</summary>
    public enum Split
    {
        /// <summary>Every non-empty line is a document.</summary>
        Lines,

        /// <summary>Blank-line separated paragraphs are documents.</summary>
        Paragraphs,

        /// <summary>The text from the first kept line to the end is one document, newlines and blank lines included
        /// — the shape of the rolling (long-context) perplexity protocol, where stories follow each other without
        /// BOS/EOS between them.</summary>
        Stream,
    }

    /// <summary>The documents of <paramref name="path"/>, skipping the first <paramref name="skip"/> of them.</summary>
    public static List<string> Read(string path, Split split, int skip = 0)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: data file not found");
        string text = File.ReadAllText(path, Encoding.UTF8).Replace("\r\n", "\n");
        if (split == Split.Stream)
            return new List<string> { StreamFrom(path, text, skip) };
        IEnumerable<string> docs = split == Split.Lines
            ? text.Split('\n').Where(l => l.Trim().Length > 0)
            : text.Split("\n\n").Select(p => p.Trim('\n')).Where(p => p.Trim().Length > 0);
        var result = docs.Skip(skip).ToList();
        if (result.Count == 0)
            throw new LinearizeException($"{path}: no documents left after skipping {skip}");
        return result;
    }

    /// <summary>The text starting at its (<paramref name="skip"/> + 1)-th non-empty line.</summary>
    private static string StreamFrom(string path, string text, int skip)
    {
        int seen = 0, pos = 0;
        while (pos < text.Length)
        {
            int end = text.IndexOf('\n', pos);
            int next = end < 0 ? text.Length : end + 1;
            if (text.AsSpan(pos, next - pos).Trim().Length > 0 && seen++ == skip)
                return text[pos..];
            pos = next;
        }

        throw new LinearizeException($"{path}: no text left after skipping {skip} non-empty lines");
    }

    public static TrainingExample Tokenize(string document, TextTokenizer tokenizer)
    {
        var ids = tokenizer.Encode(document, addBos: true).ToList();
        if (tokenizer.EosId is int eos)
            ids.Add(eos);
        var array = ids.ToArray();
        var labels = (int[])array.Clone();
        if (tokenizer.BosId is int bos && labels.Length > 0 && labels[0] == bos)
            labels[0] = TrainingExample.IgnoreIndex; // BOS is never a prediction target
        return new TrainingExample(array, labels);
    }
}
