using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.Modeling.Llama;
using Linearize.Modeling;
using Linearize.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Methods;

/// <summary>Builds a <see cref="LlamaForCausalLM"/> from a resolved <see cref="ModelSource"/> and loads its weights strictly.</summary>
public static class ModelLoader
{
    public static LlamaForCausalLM Load(ModelSource source, ScalarType dtype = ScalarType.Float32)
    {
        LlamaForCausalLM model;
        if (source.Kind == ModelSourceKind.Llama2cFile)
        {
            // One tensor at a time from the file: the model plus one tensor, never a second copy of the weights.
            var file = new Llama2cTensorSource(source.Path);
            model = new LlamaForCausalLM(file.Config, MixerFactory.For(file.Config));
            StateDictLoader.Load(model, file, model.IgnorableCheckpointKeys);
        }
        else
        {
            var config = LlamaConfig.Load(Path.Combine(source.Path, "config.json"));
            Q8Checkpoint.Refuse(config, source.Path, "a TorchSharp model (training, conversion, --engine torch)");
            model = new LlamaForCausalLM(config, MixerFactory.For(config));
            using var ckpt = SafetensorsCheckpoint.Open(source.Path);
            StateDictLoader.Load(model, new StateDictLoader.CheckpointSource(ckpt), model.IgnorableCheckpointKeys);
        }

        if (dtype != ScalarType.Float32)
            model.to(dtype);
        model.eval();
        return model;
    }

    /// <summary>
    /// Only layers <c>[from, to)</c> of the Hugging Face checkpoint <paramref name="checkpoint"/>, each tensor read from
    /// its (memory-mapped) shard and copied into the layer alone, so memory is those layers plus the tensor being read,
    /// not the model (block-wise attention transfer, docs/BLOCKWISE-TRANSFER.md). The model computes in float32, as
    /// <see cref="Load"/>'s does, and its outputs are the same bit for bit; parameters keep their names.
    /// </summary>
    /// <param name="keepStoredProjections">Keep the linear projections in the type the checkpoint stores them in
    /// (<see cref="WideningLinear"/>: bfloat16 halves their memory; each product widens its matrix, which costs time on
    /// every forward). Only for frozen projections, as in attention transfer.</param>
    public static LlamaForCausalLM LoadLayers(SafetensorsCheckpoint checkpoint, LlamaConfig config, int from, int to, bool keepStoredProjections)
    {
        Q8Checkpoint.Refuse(config, checkpoint.Source, "attention transfer");
        var model = LlamaForCausalLM.Slice(config, MixerFactory.For(config), from, to,
            keepStoredProjections ? (index, layer) => KeepStoredProjections(checkpoint, index, layer) : null);
        try
        {
            StateDictLoader.Load(model, new StateDictLoader.CheckpointSource(checkpoint), partOfCheckpoint: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }

        model.eval();
        return model;
    }

    /// <summary>Swaps each float32 projection of layer <paramref name="index"/> whose checkpoint weight is stored
    /// narrower (bfloat16, float16) for a <see cref="WideningLinear"/> of that type, freeing the float32 one at once.</summary>
    private static void KeepStoredProjections(SafetensorsCheckpoint checkpoint, int index, LlamaDecoderLayer layer)
    {
        foreach (var (prefix, module) in layer.named_modules())
        {
            if (module is not IProjectionHost host)
                continue;
            foreach (string name in host.ProjectionNames)
            {
                string key = $"model.layers.{index}.{prefix}.{name}.weight";
                if (!checkpoint.Contains(key))
                    continue; // the strict load reports it
                var stored = checkpoint.GetInfo(key).DType.ToScalarType();
                var old = host.GetProjection(name);
                var weight = old.parameters().First();
                if (stored == weight.dtype || stored is not (ScalarType.BFloat16 or ScalarType.Float16))
                    continue;
                host.SetProjection(name, new WideningLinear(weight.shape[1], weight.shape[0], old.parameters().Count() > 1, stored));
                old.Dispose();
            }
        }
    }

    /// <summary>Opens the safetensors checkpoint of <paramref name="source"/> (headers only; tensors are read on
    /// demand), for <see cref="LoadLayers"/>.</summary>
    public static SafetensorsCheckpoint OpenCheckpoint(ModelSource source) =>
        source.Kind == ModelSourceKind.HuggingFaceDirectory
            ? SafetensorsCheckpoint.Open(source.Path)
            : throw new LinearizeException($"{source.Path}: reading a model layer by layer needs a Hugging Face directory (config.json + safetensors)");

    /// <summary>Resolves <paramref name="modelPath"/>, loads model and tokenizer.</summary>
    /// <param name="idTokenizerFallback">Without a tokenizer file, use <see cref="IdTokenizer"/> (token ids as text)
    /// instead of failing: for models of synthetic tasks that have no text tokenizer.</param>
    public static (LlamaForCausalLM Model, TextTokenizer Tokenizer, ModelSource Source) LoadWithTokenizer(
        string modelPath, string? tokenizerPath = null, ScalarType dtype = ScalarType.Float32, bool idTokenizerFallback = false)
    {
        var source = ModelSource.Resolve(modelPath, tokenizerPath);
        var tokenizer = LoadTokenizer(source, source.LoadConfig(), idTokenizerFallback);
        var model = Load(source, dtype);
        return (model, tokenizer, source);
    }

    /// <summary>The tokenizer of <paramref name="source"/>, checked against the model's vocabulary.</summary>
    /// <param name="idTokenizerFallback">Without a tokenizer file, use <see cref="IdTokenizer"/> (token ids as text).</param>
    public static TextTokenizer LoadTokenizer(ModelSource source, LlamaConfig config, bool idTokenizerFallback = false)
    {
        var tokenizer = source.TokenizerPath is null && idTokenizerFallback ? new IdTokenizer(config.VocabSize) : source.LoadTokenizer();
        if (tokenizer.VocabSize > config.VocabSize)
            throw new LinearizeException(
                $"{source.TokenizerPath}: tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary is {config.VocabSize}");
        return tokenizer;
    }

    /// <summary>Writes <paramref name="model"/> as a Hugging Face directory: config.json + safetensors (+ tokenizer files copied).</summary>
    public static void SaveHuggingFace(LlamaForCausalLM model, LlamaConfig config, string directory, string? tokenizerPath,
        long maxShardBytes = 5L << 30)
    {
        // Staged: the directory appears whole or not at all (a killed write never leaves half a model).
        StagedDirectory.Write(directory, staging => SaveInto(model, config, staging, tokenizerPath, maxShardBytes));
    }

    private static void SaveInto(LlamaForCausalLM model, LlamaConfig config, string directory, string? tokenizerPath, long maxShardBytes)
    {
        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)).ToList();
        SafetensorsWriter.WriteCheckpoint(directory, tensors, maxShardBytes);
        string dtypeName = model.DType == ScalarType.BFloat16 ? "bfloat16" : model.DType == ScalarType.Float16 ? "float16" : "float32";
        config.With(j => j["torch_dtype"] = dtypeName).Save(Path.Combine(directory, "config.json"));
        CopyTokenizer(tokenizerPath, directory);
    }

    /// <summary>Copies a tokenizer file (and, for <c>tokenizer.json</c>, its config and special-tokens map) into a
    /// model directory, so the directory is self-contained.</summary>
    public static void CopyTokenizer(string? tokenizerPath, string directory)
    {
        if (tokenizerPath is null)
            return;
        string tokDir = Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!;
        var files = new List<string> { tokenizerPath };
        if (tokenizerPath.EndsWith("tokenizer.json", StringComparison.Ordinal))
            files.AddRange(new[] { "tokenizer_config.json", "special_tokens_map.json" }.Select(f => Path.Combine(tokDir, f)).Where(File.Exists));
        foreach (var f in files)
        {
            string dest = Path.Combine(directory, Path.GetFileName(f));
            if (Path.GetFullPath(dest) != Path.GetFullPath(f))
                AtomicFile.Write(dest, s => { using var src = File.OpenRead(f); src.CopyTo(s); });
        }
    }
}
