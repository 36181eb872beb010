using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.Inference.Mixers;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Methods;

/// <summary>Builds the decode engine, each layer's mixer chosen by <see cref="MixerRegistry"/>. The engine itself does
/// not know the methods; this is where it is told.</summary>
public static class Engines
{
    /// <summary>The engine for a model already loaded in TorchSharp (its parameters are read, then stay the model's).</summary>
    public static DecodeEngine Create(LlamaForCausalLM model, EngineOptions? options = null) =>
        DecodeEngine.Create(model, MixerRegistry.CreateEngineMixer, options);

    /// <summary>
    /// The engine straight from a Hugging Face directory or a llama2.c file, holding no TorchSharp model: matrices
    /// already stored in the engine's format are used where the file maps them (<see cref="EngineOptions.WeightsInPlace"/>),
    /// the others read from the mapping a block of rows at a time and packed (a llama2.c file's q/k rows permuted as
    /// they are read). The Liger authors' directories, which need a model to be built first, are loaded and packed as
    /// <see cref="Create"/> does.
    /// </summary>
    public static DecodeEngine Load(ModelSource source, EngineOptions? options = null)
    {
        var config = source.LoadConfig();
        if (source.Kind == ModelSourceKind.Llama2cFile)
            return LoadLlama2c(source, options ?? new EngineOptions());
        if (source.Kind != ModelSourceKind.HuggingFaceDirectory || LigerFormat.SourceModelType(config) is not null)
        {
            using var model = ModelLoader.Load(source);
            return Create(model, options);
        }

        var engineOptions = options ?? new EngineOptions();
        if (Q8Checkpoint.IsQuantized(config) && engineOptions.KeepStoredQ8)
            engineOptions = engineOptions with { Weights = WeightFormat.Q8 };
        var lin = LinearizationConfig.FromModel(config);
        var checkpoint = SafetensorsCheckpoint.Open(source.Path);
        var weights = new CheckpointWeights(checkpoint);
        var mixers = new List<EngineMixer>();
        float[] invFreq;
        try
        {
            for (int i = 0; i < config.NumHiddenLayers; i++)
                mixers.Add(MixerRegistry.CreateEngineMixer(config, i, lin, (layer, index) => LoadLayer(layer, index, weights)));
            using var rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
            invFreq = rope.InverseFrequencies.to(ScalarType.Float32).data<float>().ToArray();
        }
        catch
        {
            foreach (var m in mixers)
                (m as IDisposable)?.Dispose();
            checkpoint.Dispose();
            throw;
        }

        // The engine owns the mapping from here: matrices it uses in place live in it (EngineOptions.WeightsInPlace).
        return DecodeEngine.Create(config, weights, mixers, invFreq, engineOptions, weightOwner: checkpoint);
    }

    /// <summary>A llama2.c teacher straight from its mapped file (<see cref="Llama2cWeights"/>): float32 matrices used in
    /// place, q and k permuted as they are packed; the engine owns the mapping.</summary>
    private static DecodeEngine LoadLlama2c(ModelSource source, EngineOptions options)
    {
        var weights = new Llama2cWeights(source.Path);
        var mixers = new List<EngineMixer>();
        try
        {
            var config = weights.Layout.Config;
            for (int i = 0; i < config.NumHiddenLayers; i++)
                mixers.Add(MixerRegistry.CreateEngineMixer(config, i, null, (layer, index) => LoadLayer(layer, index, weights)));
            using var rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
            var invFreq = rope.InverseFrequencies.to(ScalarType.Float32).data<float>().ToArray();
            return DecodeEngine.Create(config, weights, mixers, invFreq, options, weightOwner: weights);
        }
        catch
        {
            foreach (var m in mixers)
                (m as IDisposable)?.Dispose();
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Each layer's token mixer by method as <see cref="TokenMixer.Summarize"/> counts them, read from the
    /// configuration alone (for reports about an engine that holds no TorchSharp model).</summary>
    public static IReadOnlyList<string> DescribeMixers(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config);
        string softmax = config.SlidingWindow is int w ? $"softmax(window={w})" : "softmax";
        return TokenMixer.Summarize(Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => lin is null || lin.IsSoftmaxLayer(i) ? softmax : lin.Method.Name));
    }

    /// <summary>Fills a layer built alone from the checkpoint's <c>model.layers.{i}.self_attn.*</c> tensors (strictly:
    /// every parameter present, in float32; a q8 checkpoint's projections dequantized, as the engine multiplies them).</summary>
    private static void LoadLayer(TokenMixer layer, int index, IWeightSource weights)
    {
        string prefix = $"model.layers.{index}.self_attn.";
        using var noGrad = no_grad();
        foreach (var (name, p) in layer.named_parameters())
        {
            if (!weights.Contains(prefix + name))
                throw new LinearizeException($"{weights.Source}: missing tensor {prefix + name}");
            var shape = weights.Shape(prefix + name);
            if (!shape.SequenceEqual(p.shape))
                throw new LinearizeException($"{weights.Source}: {prefix + name} has shape [{string.Join(", ", shape)}], expected [{string.Join(", ", p.shape)}]");
            using var t = torch.tensor(weights.ReadFloats(prefix + name), shape);
            p.copy_(t);
        }

        layer.eval();
    }
}
