using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;

namespace Linearize.Modeling;

/// <summary>
/// Configurations with the shapes of real checkpoints, for random-weight benchmarks (speed does not depend on
/// the weights being trained) and tests.
/// </summary>
public static class ModelPresets
{
    public static readonly IReadOnlyDictionary<string, Func<JsonObject>> All = new Dictionary<string, Func<JsonObject>>
    {
        // HuggingFaceTB/SmolLM2-135M config.json (its BOS and EOS are both <|endoftext|>, id 0)
        ["smollm2-135m"] = () => Llama(hidden: 576, intermediate: 1536, layers: 30, heads: 9, kvHeads: 3, vocab: 49152,
            context: 8192, theta: 100000, tied: true, eps: 1e-5, bos: 0, eos: 0),
        // meta-llama/Llama-3.2-1B config.json
        ["llama-3.2-1b"] = () => Llama32(hidden: 2048, layers: 16, heads: 32),
        // meta-llama/Llama-3.2-3B config.json
        ["llama-3.2-3b"] = () => Llama32(hidden: 3072, layers: 28, heads: 24),
        // meta-llama/Meta-Llama-3-8B config.json: the shape the Liger and LoLCATs papers report (16 GB in bfloat16)
        ["llama-3-8b"] = () => Llama(hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128256,
            context: 8192, theta: 500000, tied: false, eps: 1e-5, bos: 128000, eos: 128001),
        // karpathy/tinyllamas stories110M (llama2.c's largest TinyStories model; run.c's usual benchmark)
        ["stories110m"] = () => Llama(hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 12, vocab: 32000,
            context: 1024, theta: 10000, tied: true, eps: 1e-5),
        // The recall lab's teacher: realistic 64-dimensional heads, small enough to train from scratch on
        // two cores; the vocabulary fits RecallTaskOptions' defaults (filler + 64 keys + 64 values).
        ["recall"] = () => Llama(hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 4, vocab: 129,
            context: 512, theta: 10000, tied: false, eps: 1e-5),
        // karpathy/tinyllamas stories260K
        ["stories260k"] = () => Llama(hidden: 64, intermediate: 172, layers: 5, heads: 8, kvHeads: 4, vocab: 512,
            context: 512, theta: 10000, tied: true, eps: 1e-5),
    };

    /// <summary>A Llama 3.2 shape: 8 KV heads, intermediate 8192, the Llama 3 vocabulary and its long-context RoPE
    /// scaling, tied embeddings.</summary>
    private static JsonObject Llama32(int hidden, int layers, int heads)
    {
        // <|begin_of_text|> and <|end_of_text|> of the Llama 3 tokenizer
        var j = Llama(hidden: hidden, intermediate: 8192, layers: layers, heads: heads, kvHeads: 8, vocab: 128256,
            context: 131072, theta: 500000, tied: true, eps: 1e-5, bos: 128000, eos: 128001);
        j["rope_scaling"] = new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
            ["original_max_position_embeddings"] = 8192,
        };
        return j;
    }

    public static LlamaConfig Get(string name) =>
        All.TryGetValue(name, out var make)
            ? LlamaConfig.FromJson(make(), $"preset {name}")
            : throw new LinearizeException($"unknown preset '{name}' (available: {string.Join(", ", All.Keys)})");

    public static JsonObject Llama(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, int context,
        double theta, bool tied, double eps, int bos = 1, int eos = 2) => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["model_type"] = "llama",
        ["hidden_size"] = hidden,
        ["intermediate_size"] = intermediate,
        ["num_hidden_layers"] = layers,
        ["num_attention_heads"] = heads,
        ["num_key_value_heads"] = kvHeads,
        ["vocab_size"] = vocab,
        ["max_position_embeddings"] = context,
        ["rms_norm_eps"] = eps,
        ["rope_theta"] = theta,
        ["hidden_act"] = "silu",
        ["tie_word_embeddings"] = tied,
        ["bos_token_id"] = bos,
        ["eos_token_id"] = eos,
        ["torch_dtype"] = "float32",
    };
}
