namespace Linearize.Tokenization;

/// <summary>Opens a tokenizer file by its kind, or finds the tokenizer that belongs to a model directory.</summary>
public static class TokenizerLoader
{
    /// <summary>Loads <c>tokenizer.json</c>, a SentencePiece <c>.model</c>, or a llama2.c <c>tok*.bin</c>.</summary>
    public static TextTokenizer Load(string path)
    {
        if (Directory.Exists(path))
            return Find(path) is { } found ? Load(found) : throw new LinearizeException($"{path}: no tokenizer (tokenizer.json, tokenizer.model or tok*.bin) in this directory");
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: tokenizer file not found");
        string name = Path.GetFileName(path);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return HfJsonTokenizer.Load(path);
        if (name.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
            return SentencePieceTextTokenizer.Load(path);
        if (name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
            return Llama2cTokenizer.Load(path);
        throw new LinearizeException($"{path}: unknown tokenizer format (expected tokenizer.json, *.model or tok*.bin)");
    }

    /// <summary>
    /// The tokenizer file of a model directory: <c>tokenizer.json</c> (unless it is SentencePiece-style and a
    /// <c>tokenizer.model</c> exists), then <c>tokenizer.model</c>, then a single <c>tok*.bin</c>. Null when none.
    /// </summary>
    public static string? Find(string directory)
    {
        string json = Path.Combine(directory, "tokenizer.json");
        string model = Path.Combine(directory, "tokenizer.model");
        if (File.Exists(json) && !(File.Exists(model) && HfJsonTokenizer.IsSentencePieceStyle(json)))
            return json;
        if (File.Exists(model))
            return model;
        var bins = Directory.GetFiles(directory, "tok*.bin");
        if (bins.Length == 1)
            return bins[0];
        if (bins.Length > 1)
            throw new LinearizeException(
                $"{directory}: several llama2.c tokenizers ({string.Join(", ", bins.Select(Path.GetFileName))}); pass --tokenizer FILE");
        return null;
    }
}
