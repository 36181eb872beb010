using System.Text;
using Linearize.Tokenization;

namespace Linearize.Training.Data;

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
    }

    /// <summary>The documents of <paramref name="path"/>, skipping the first <paramref name="skip"/> of them.</summary>
    public static List<string> Read(string path, Split split, int skip = 0)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: data file not found");
        string text = File.ReadAllText(path, Encoding.UTF8).Replace("\r\n", "\n");
        IEnumerable<string> docs = split == Split.Lines
            ? text.Split('\n').Where(l => l.Trim().Length > 0)
            : text.Split("\n\n").Select(p => p.Trim('\n')).Where(p => p.Trim().Length > 0);
        var result = docs.Skip(skip).ToList();
        if (result.Count == 0)
            throw new LinearizeException($"{path}: no documents left after skipping {skip}");
        return result;
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
