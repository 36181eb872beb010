using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Methods;

/// <summary>Chooses each layer's token mixer from a model config: the teacher's attention, or what its
/// <c>linearization</c> section asks for.</summary>
public static class MixerFactory
{
    public static Func<LlamaConfig, int, TokenMixer> For(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config);
        return (c, i) => MixerRegistry.CreateLayer(c, i, lin);
    }

    /// <summary>True when any layer's memory grows with the context (a full softmax layer).</summary>
    public static bool HasGrowingCache(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config);
        return lin is null || lin.SoftmaxLayers.Count > 0;
    }
}
