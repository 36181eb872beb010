using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Mixers;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Methods;

/// <summary>
/// The one table that wires each kind of token mixer to its TorchSharp layer and its engine mixer. The methods
/// themselves (names, families, window shapes) are listed once in <see cref="LinearizationMethods"/>; each
/// <see cref="MethodKind"/> has one row here, and the teacher's softmax attention (kept by hybrids) one more.
/// docs/ARCHITECTURE.md, "Adding a token mixer", says what a new row needs.
/// </summary>
public static class MixerRegistry
{
    /// <summary>The teacher's attention: full softmax (or Mistral's window), a growing KV cache.</summary>
    internal static MixerImplementation Softmax { get; } = new(
        typeof(LlamaAttention),
        (c, i, _) => new LlamaAttention(c, i),
        (layer, c) => new SoftmaxMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, ((LlamaAttention)layer).SlidingWindow, c.MaxPositionEmbeddings),
        (c, _) => new SoftmaxMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.SlidingWindow, c.MaxPositionEmbeddings));

    private static readonly Dictionary<MethodKind, MixerImplementation> Kinds = new()
    {
        [MethodKind.Liger] = new(
            typeof(LigerAttention),
            (c, i, lin) => new LigerAttention(c, i, lin.Liger),
            (layer, c) => LigerMixer(((LigerAttention)layer).Options, c),
            (c, lin) => LigerMixer(lin.Liger, c)),
        [MethodKind.SlidingWindow] = new(
            typeof(SlidingWindowAttention),
            (c, i, lin) => new SlidingWindowAttention(c, i, lin.Liger.Window, lin.Sinks),
            (layer, c) =>
            {
                var s = (SlidingWindowAttention)layer;
                return new WindowMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, s.Window, s.Sinks, 1, 0, null);
            },
            (c, lin) => new WindowMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, lin.Liger.Window, lin.Sinks, 1, 0, null)),
        [MethodKind.Lolcats] = new(
            typeof(LolcatsAttention),
            (c, i, lin) => new LolcatsAttention(c, i, lin.Lolcats),
            (layer, c) => new LolcatsMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, (LolcatsAttention)layer)),
    };

    /// <summary>The row of a method's kind.</summary>
    internal static MixerImplementation For(LinearizationMethod method) =>
        Kinds.TryGetValue(method.Kind, out var row)
            ? row
            : throw new InvalidOperationException($"method {method} has kind {method.Kind}, which has no row in MixerRegistry");

    /// <summary>Layer <paramref name="layer"/> of a model: the teacher's attention when the model is not linearized or
    /// keeps that layer softmax, otherwise its method's layer.</summary>
    public static TokenMixer CreateLayer(LlamaConfig config, int layer, LinearizationConfig? linearization) =>
        linearization is null || linearization.IsSoftmaxLayer(layer)
            ? Softmax.CreateLayer(config, layer, new LinearizationConfig())
            : For(linearization.Method).CreateLayer(config, layer, linearization);

    /// <summary>The class <see cref="CreateLayer"/> would build for layer <paramref name="layer"/>, without building it.</summary>
    public static Type LayerType(int layer, LinearizationConfig? linearization) =>
        linearization is null || linearization.IsSoftmaxLayer(layer) ? Softmax.LayerType : For(linearization.Method).LayerType;

    /// <summary>The engine mixer for a built TorchSharp layer, found by the layer's class.</summary>
    internal static EngineMixer CreateEngineMixer(TokenMixer layer, LlamaConfig config)
    {
        var row = layer.GetType() == Softmax.LayerType ? Softmax : Kinds.Values.FirstOrDefault(r => r.LayerType == layer.GetType());
        return row is null
            ? throw new LinearizeException($"the decode engine has no mixer for {layer.Describe()}; use --engine torch")
            : row.CreateEngineMixer(layer, config);
    }

    /// <summary>Layer <paramref name="layer"/>'s engine mixer from the config, its own parameters (if the mixer needs
    /// any beyond the projections) read by <paramref name="loadLayer"/> into the TorchSharp layer built for it.</summary>
    internal static EngineMixer CreateEngineMixer(LlamaConfig config, int layer, LinearizationConfig? linearization,
        Action<TokenMixer, int> loadLayer)
    {
        var lin = linearization ?? new LinearizationConfig();
        var row = linearization is null || linearization.IsSoftmaxLayer(layer) ? Softmax : For(linearization.Method);
        if (row.CreateEngineMixerFromConfig is { } fromConfig)
            return fromConfig(config, lin);
        using var built = row.CreateLayer(config, layer, lin);
        loadLayer(built, layer);
        return row.CreateEngineMixer(built, config);
    }

    private static WindowMixer LigerMixer(LigerOptions o, LlamaConfig c) =>
        new(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, o.Window, 0, o.Alpha, o.Beta,
            new RecurrentBranch(o, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim), o.SparseCache);

    /// <summary>Every kind has a row (checked by the tests, so a new <see cref="MethodKind"/> cannot be forgotten here).</summary>
    public static IEnumerable<MethodKind> KindsWithRows => Kinds.Keys;
}
