using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Mixers;
using Linearize.Modeling;

namespace Linearize.Methods;

/// <summary>
/// How one kind of token mixer is built on both sides of the project: the TorchSharp layer (training, the reference
/// forward and its decoding cache) and the engine mixer that decodes the same layer (with its per-sequence state).
/// A row of <see cref="MixerRegistry"/>.
/// </summary>
/// <param name="LayerType">The TorchSharp layer class; the engine finds a layer's row by it.</param>
/// <param name="CreateLayer">Builds layer <c>i</c> of a model from its config and <c>linearization</c> section.</param>
/// <param name="CreateEngineMixer">Builds the engine twin of a built layer.</param>
/// <param name="CreateEngineMixerFromConfig">Builds the engine twin from the config alone, for mixers whose only
/// weights are the projections the engine packs itself; null when the mixer needs the layer's own parameters (then
/// the layer is built and loaded first).</param>
internal sealed record MixerImplementation(
    Type LayerType,
    Func<LlamaConfig, int, LinearizationConfig, TokenMixer> CreateLayer,
    Func<TokenMixer, LlamaConfig, EngineMixer> CreateEngineMixer,
    Func<LlamaConfig, LinearizationConfig, EngineMixer>? CreateEngineMixerFromConfig = null);
