using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Tokenization;

namespace Linearize.Modeling;

/// <summary>
/// Where a model's config, weights and tokenizer are: resolved from what the user typed (<c>--model M</c>).
/// </summary>
public sealed record ModelSource(ModelSourceKind Kind, string Path, string? TokenizerPath)
{
    /// <summary>
    /// Resolves <paramref name="model"/>: an HF directory, a llama2.c <c>.bin</c>, or a directory holding one
    /// <c>.bin</c> and its <c>tok*.bin</c>. <paramref name="tokenizer"/> overrides the tokenizer that would be found.
    /// </summary>
    public static ModelSource Resolve(string model, string? tokenizer = null)
    {
        if (tokenizer is not null && !File.Exists(tokenizer))
            throw new LinearizeException($"{tokenizer}: tokenizer file not found");
        if (File.Exists(model))
        {
            if (!model.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
                throw new LinearizeException($"{model}: a model is an HF directory (config.json + safetensors) or a llama2.c .bin file");
            string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(model))!;
            return new ModelSource(ModelSourceKind.Llama2cFile, model, tokenizer ?? TokenizerLoader.Find(dir));
        }

        if (!Directory.Exists(model))
            throw new LinearizeException($"{model}: no such model file or directory");
        if (File.Exists(System.IO.Path.Combine(model, "config.json")))
            return new ModelSource(ModelSourceKind.HuggingFaceDirectory, model, tokenizer ?? TokenizerLoader.Find(model));

        var bins = Directory.GetFiles(model, "*.bin")
            .Where(f => !System.IO.Path.GetFileName(f).StartsWith("tok", StringComparison.OrdinalIgnoreCase)).ToArray();
        if (bins.Length == 1)
            return new ModelSource(ModelSourceKind.Llama2cFile, bins[0], tokenizer ?? TokenizerLoader.Find(model));
        if (bins.Length > 1)
            throw new LinearizeException($"{model}: several llama2.c checkpoints ({string.Join(", ", bins.Select(System.IO.Path.GetFileName))}); pass the file itself");
        throw new LinearizeException($"{model}: neither an HF model directory (no config.json) nor a directory with a llama2.c .bin");
    }

    public TextTokenizer LoadTokenizer() =>
        TokenizerPath is null
            ? throw new LinearizeException($"{Path}: no tokenizer found next to the model; pass --tokenizer FILE")
            : TokenizerLoader.Load(TokenizerPath);

    public LlamaConfig LoadConfig() => Kind == ModelSourceKind.HuggingFaceDirectory
        ? LlamaConfig.Load(System.IO.Path.Combine(Path, "config.json"))
        : Llama2cCheckpoint.LoadConfig(Path);

    public long SizeOnDisk => Kind == ModelSourceKind.Llama2cFile
        ? new FileInfo(Path).Length
        : Directory.GetFiles(Path, "*.safetensors").Sum(f => new FileInfo(f).Length);
}
