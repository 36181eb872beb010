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
        if (lin is null)
            return (c, i) => new LlamaAttention(c, i);
        return (c, i) =>
        {
            if (lin.IsSoftmaxLayer(i))
                return new LlamaAttention(c, i);
            if (lin.IsLolcats)
                return new LolcatsAttention(c, i, lin.Lolcats);
            if (lin.Method == "swa")
                return new SlidingWindowAttention(c, i, lin.Liger.Window, lin.Sinks);
            return new LigerAttention(c, i, lin.Liger);
        };
    }

    /// <summary>True when any layer's memory grows with the context (a full softmax layer).</summary>
    public static bool HasGrowingCache(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config);
        return lin is null || lin.SoftmaxLayers.Count > 0;
    }
}
