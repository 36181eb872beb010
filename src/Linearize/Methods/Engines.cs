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
    /// The engine straight from a Hugging Face directory: each tensor is read from the memory-mapped checkpoint, packed
    /// and released, so the process holds the packed weights and no TorchSharp model. Sources that need a model to be
    /// built first (a llama2.c file, whose q/k rows are permuted on load; the Liger authors' directories) are loaded and
    /// packed as <see cref="Create"/> does.
    /// </summary>
    public static DecodeEngine Load(ModelSource source, EngineOptions? options = null)
    {
        var config = source.LoadConfig();
        if (source.Kind != ModelSourceKind.HuggingFaceDirectory || LigerFormat.SourceModelType(config) is not null)
        {
            using var model = ModelLoader.Load(source);
            return Create(model, options);
        }

        var lin = LinearizationConfig.FromModel(config);
        using var checkpoint = SafetensorsCheckpoint.Open(source.Path);
        var mixers = new List<EngineMixer>();
        try
        {
            for (int i = 0; i < config.NumHiddenLayers; i++)
                mixers.Add(MixerRegistry.CreateEngineMixer(config, i, lin, (layer, index) => LoadLayer(layer, index, checkpoint)));
            using var rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
            var invFreq = rope.InverseFrequencies.to(ScalarType.Float32).data<float>().ToArray();
            return DecodeEngine.Create(config, new CheckpointWeights(checkpoint), mixers, invFreq, options);
        }
        catch
        {
            foreach (var m in mixers)
                (m as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>Fills a layer built alone from the checkpoint's <c>model.layers.{i}.self_attn.*</c> tensors (strictly:
    /// every parameter present, in float32).</summary>
    private static void LoadLayer(TokenMixer layer, int index, SafetensorsCheckpoint checkpoint)
    {
        string prefix = $"model.layers.{index}.self_attn.";
        using var noGrad = no_grad();
        foreach (var (name, p) in layer.named_parameters())
        {
            if (!checkpoint.Contains(prefix + name))
                throw new LinearizeException($"{checkpoint.Source}: missing tensor {prefix + name}");
            using var t = checkpoint.Read(prefix + name);
            if (!t.shape.SequenceEqual(p.shape))
                throw new LinearizeException($"{checkpoint.Source}: {prefix + name} has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", p.shape)}]");
            p.copy_(t);
        }

        layer.eval();
    }
}
