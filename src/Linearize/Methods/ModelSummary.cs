using Linearize.Checkpoints.Configuration;

namespace Linearize.Methods;

/// <summary>
/// What a model is, from its config alone: each layer's mixer and the parameter count, without reading a weight. Each
/// distinct kind of layer is built once (random weights, one decoder layer: at the Llama-3-8B shape ~0.9 GB in float32)
/// to ask it, so describing a model larger than memory costs one layer of it, not the model (<c>inspect</c>).
/// </summary>
public sealed record ModelSummary(long Parameters, IReadOnlyList<string> Mixers)
{
    public static ModelSummary Of(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config);
        var factory = MixerFactory.For(config);
        var kinds = new Dictionary<Type, (string Mixer, long Parameters)>();
        var mixers = new List<string>(config.NumHiddenLayers);
        long parameters = 0;
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            var type = MixerRegistry.LayerType(i, lin);
            if (!kinds.TryGetValue(type, out var kind))
            {
                // The layer under its real index and name; a slice holds no embeddings, final norm or head.
                using var layer = Modeling.Llama.LlamaForCausalLM.Slice(config, factory, i, i + 1);
                kind = (layer.Model.Layers[0].SelfAttention.Describe(), layer.ParameterCount());
                kinds[type] = kind;
            }

            mixers.Add(kind.Mixer);
            parameters += kind.Parameters;
        }

        long embeddings = (long)config.VocabSize * config.HiddenSize;
        parameters += embeddings + config.HiddenSize + (config.TieWordEmbeddings ? 0 : embeddings);
        return new ModelSummary(parameters, mixers);
    }
}
