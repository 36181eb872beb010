using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Tests.Fixtures;

/// <summary>Seeded random tiny Llama-family configurations covering the architecture variants.</summary>
public static class TinyModels
{
    public static JsonObject BaseJson(int layers = 2, int hidden = 32, int heads = 4, int kvHeads = 2, int vocab = 67) => new()
    {
        ["model_type"] = "llama",
        ["hidden_size"] = hidden,
        ["intermediate_size"] = 48,
        ["num_hidden_layers"] = layers,
        ["num_attention_heads"] = heads,
        ["num_key_value_heads"] = kvHeads,
        ["vocab_size"] = vocab,
        ["max_position_embeddings"] = 256,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 10000.0,
        ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
        ["torch_dtype"] = "float32",
    };

    /// <summary>Named variants: GQA, multi-head, q/k/v bias (Qwen2), tied head, llama3 RoPE scaling, explicit head_dim.</summary>
    public static IEnumerable<object[]> Variants() => new[]
    {
        new object[] { "gqa-untied" },
        new object[] { "mha-tied" },
        new object[] { "qwen2-bias" },
        new object[] { "llama3-rope" },
        new object[] { "linear-rope-headdim" },
        new object[] { "mistral-window" },
    };

    public static LlamaConfig Config(string variant)
    {
        var j = BaseJson();
        switch (variant)
        {
            case "gqa-untied":
                break;
            case "mha-tied":
                j["num_key_value_heads"] = 4;
                j["tie_word_embeddings"] = true;
                break;
            case "qwen2-bias":
                j["model_type"] = "qwen2";
                j["num_key_value_heads"] = 1;
                break;
            case "llama3-rope":
                j["rope_theta"] = 500000.0;
                j["rope_scaling"] = new JsonObject
                {
                    ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                    ["original_max_position_embeddings"] = 16,
                };
                break;
            case "linear-rope-headdim":
                j["head_dim"] = 16;
                j["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 2.0 };
                break;
            case "mistral-window":
                j["model_type"] = "mistral";
                j["sliding_window"] = 5;
                break;
            default:
                throw new ArgumentException(variant);
        }

        return LlamaConfig.FromJson(j, $"tiny {variant}");
    }

    public static LlamaForCausalLM Create(string variant, ulong seed = 7) => Create(Config(variant), seed);

    public static LlamaForCausalLM Create(LlamaConfig config, ulong seed = 7)
    {
        var model = new LlamaForCausalLM(config);
        // std 0.2 rather than 0.02: a tiny model with HF's init produces nearly uniform logits, which would make
        // every equality test trivially pass.
        RandomWeights.Initialize(model, seed, std: 0.2);
        model.eval();
        return model;
    }

    public static TempDir TempDirectory() => new();

    /// <summary>A tiny model of <paramref name="variant"/> saved as a Hugging Face directory inside <paramref name="dir"/>,
    /// as the CLI and the benchmarks load one.</summary>
    public static ModelSource SavedSource(TempDir dir, string variant = "gqa-untied")
    {
        string path = Path.Combine(dir.Path, variant);
        using (var model = Create(variant))
            ModelLoader.SaveHuggingFace(model, model.Config, path, null);
        return ModelSource.Resolve(path, null);
    }
}
