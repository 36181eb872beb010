using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;

namespace Linearize.Methods;

/// <summary>
/// Converts a teacher into a linearized model. Liger's gated families add no parameters, so conversion is: validate,
/// write the teacher's weights under the same names, and a config with a <c>linearization</c> section; loading that
/// directory builds the converted layers. The parameters some methods add (LoLCATs' feature maps and window factors,
/// the delta-rule families' <c>b_proj</c>, the learned gate's <c>g_proj</c>) have fixed initialisations or, for
/// <c>g_proj</c>, one computed from the teacher's <c>k_proj</c>, so conversion stays deterministic and as fast as
/// copying the weights.
/// </summary>
public static class Converter
{
    public static LlamaConfig ConvertedConfig(LlamaConfig teacher, LinearizationConfig linearization)
    {
        if (LinearizationConfig.FromModel(teacher) is not null)
            throw new LinearizeException($"{teacher.Source}: this model is already linearized; convert its teacher instead");
        linearization.Validate(teacher);
        return teacher.With(j => j[LinearizationConfig.SectionName] = linearization.ToJson());
    }

    /// <summary>Builds the converted model in memory from a loaded teacher (weights are copied). Parameters the method
    /// adds (LoLCATs' feature maps and window factors, the delta rule's <c>b_proj</c>) keep their initialisation; every other one must come from the
    /// teacher.</summary>
    public static LlamaForCausalLM Convert(LlamaForCausalLM teacher, LinearizationConfig linearization)
    {
        var config = ConvertedConfig(teacher.Config, linearization);
        var student = new LlamaForCausalLM(config, MixerFactory.For(config));
        var weights = teacher.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (name, tensor) in student.state_dict())
            if (IsAddedParameter(name) && !weights.ContainsKey(name))
                weights[name] = tensor;
        StateDictLoader.Load(student, new StateDictLoader.DictionarySource(teacher.Config.Source, weights));
        foreach (var layer in student.Model.Layers)
            if (layer.SelfAttention is LigerAttention liger)
                liger.InitializeGateFromKeys(); // the learned gate starts as the pooled keys (docs/METHODS.md §1.8)
        student.to(teacher.DType);
        student.eval();
        return student;
    }

    /// <summary>Names of parameters that conversion adds rather than copies from the teacher.</summary>
    public static bool IsAddedParameter(string name) =>
        name.Contains(".self_attn.feature_map_", StringComparison.Ordinal) || name.EndsWith(".self_attn.window_factors", StringComparison.Ordinal) ||
        name.Contains(".self_attn.b_proj.", StringComparison.Ordinal) || name.Contains(".self_attn.g_proj.", StringComparison.Ordinal);

    /// <summary>Converts and writes <paramref name="outDir"/> (config, safetensors, tokenizer files).</summary>
    public static LlamaForCausalLM ConvertToDirectory(LlamaForCausalLM teacher, LinearizationConfig linearization, string outDir,
        string? tokenizerPath)
    {
        var student = Convert(teacher, linearization);
        ModelLoader.SaveHuggingFace(student, student.Config, outDir, tokenizerPath);
        return student;
    }
}
