using Linearize.Inference;
using Linearize.Modeling.Llama;

namespace Linearize.Methods;

/// <summary>Builds the decode engine for a loaded model, each layer's mixer chosen by <see cref="MixerRegistry"/>.
/// The engine itself does not know the methods; this is where it is told.</summary>
public static class Engines
{
    public static DecodeEngine Create(LlamaForCausalLM model, EngineOptions? options = null) =>
        DecodeEngine.Create(model, MixerRegistry.CreateEngineMixer, options);
}
