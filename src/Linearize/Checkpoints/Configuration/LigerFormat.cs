using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// The Liger authors' Hugging Face directories (<c>OpenSparseLLMs/Linearization</c>, <c>liger/models/liger_*</c>): a
/// <c>config.json</c> whose <c>model_type</c> is <c>liger_*</c> beside the teacher's weights under the teacher's names
/// (the layer adds no tensors). Reading translates the config into ours — the teacher's <c>model_type</c> plus a
/// <c>linearization</c> section computing what their modeling file computes; writing does the reverse and refuses
/// every option their code has no way to express, so nothing is silently dropped.
/// </summary>
public static class LigerFormat
{
    /// <summary>Top-level key our translated config keeps, naming the authors' <c>model_type</c> it came from.</summary>
    public const string MarkerKey = "authors_format";

    /// <summary>Keys per query of their window branch: <c>_flash_attention_forward(sliding_window=64)</c> passes
    /// <c>window_size=(64, 64)</c> to flash-attn, so a query sees itself and the 64 keys before it (the paper says 64).</summary>
    public const int CodeWindow = 65;

    /// <summary>Their <c>0.5 * y + 0.5 * o_</c>.</summary>
    public const double CodeMix = 0.5;

    /// <summary><c>LigerGSAConfig.pool_size</c>'s default, used when a <c>liger_gsa</c> config omits it.</summary>
    public const int DefaultPoolSize = 64;

    public static readonly IReadOnlyList<LigerModelType> Types = new LigerModelType[]
    {
        new("liger_gla", "llama", LinearizationMethods.LigerGla, "LigerGLAForCausalLM"),
        new("liger_gsa", "llama", LinearizationMethods.LigerGsa, "LigerGSAForCausalLM"),
        new("liger_hgrn2", "llama", LinearizationMethods.LigerHgrn2, "LigerHGRN2ForCausalLM"),
        new("liger_mistral_gla", "mistral", LinearizationMethods.LigerGla, "LigerMistralGLAForCausalLM"),
        new("liger_qwen2_gla", "qwen2", LinearizationMethods.LigerGla, "LigerQwen2GLAForCausalLM"),
        new("liger_qwen3_gla", "qwen2", LinearizationMethods.LigerGla, "LigerQwen3GLAForCausalLM"),
    };

    private static readonly Dictionary<string, string> TeacherArchitectures = new()
    {
        ["llama"] = "LlamaForCausalLM", ["mistral"] = "MistralForCausalLM", ["qwen2"] = "Qwen2ForCausalLM",
    };

    public static LigerModelType? Find(string modelType) => Types.FirstOrDefault(t => t.ModelType == modelType);

    /// <summary>The authors' <c>model_type</c> a translated config came from, or null.</summary>
    public static string? SourceModelType(LlamaConfig config) =>
        config.Raw[MarkerKey] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>
    /// Translates a <c>liger_*</c> config into ours. <paramref name="source"/> names the file in errors; when it is a
    /// file on disk, its directory's safetensors decide one case their code leaves to the weights: a
    /// <c>liger_qwen3_gla</c> attention has q/k/v biases (zero when the Qwen3 teacher has none).
    /// </summary>
    public static JsonObject ToLinearized(JsonObject raw, string source)
    {
        string modelType = raw["model_type"]!.GetValue<string>();
        var type = Find(modelType) ?? throw new LinearizeException($"{source}: 'model_type' {modelType} is not a Liger model type");
        var copy = (JsonObject)raw.DeepClone();
        string baseType = type.BaseModelType;
        if (type.ModelType is "liger_qwen2_gla" or "liger_qwen3_gla")
        {
            // Their Qwen attention computes head_dim = hidden_size / num_attention_heads and raises otherwise.
            int hidden = IntOf(copy, "hidden_size", source), heads = IntOf(copy, "num_attention_heads", source);
            if (heads <= 0 || hidden % heads != 0)
                throw new LinearizeException($"{source}: 'hidden_size' ({hidden}) must be a multiple of 'num_attention_heads' ({heads}) for {modelType}");
            if (copy["head_dim"] is JsonNode hd && hd.GetValueKind() == JsonValueKind.Number && IntOf(copy, "head_dim", source) != hidden / heads)
                throw new LinearizeException(
                    $"{source}: 'head_dim' ({hd.ToJsonString()}) differs from hidden_size / num_attention_heads ({hidden / heads}), which {modelType}'s attention uses");
            copy["head_dim"] = hidden / heads;
            if (type.ModelType == "liger_qwen3_gla" && !HasQkvBias(source))
            {
                // Zero biases compute nothing: a Qwen3 teacher's weights run as a bias-free Llama attention.
                baseType = "llama";
                copy["attention_bias"] = false;
            }
        }

        int? poolSize = null;
        if (type.Method == LinearizationMethods.LigerGsa)
        {
            poolSize = copy["pool_size"] is null ? DefaultPoolSize : IntOf(copy, "pool_size", source);
            if (poolSize < 1)
                throw new LinearizeException($"{source}: 'pool_size' must be at least 1, got {poolSize}");
        }

        var family = type.Method.Family!.Value;
        copy["model_type"] = baseType;
        copy["architectures"] = new JsonArray(TeacherArchitectures[baseType]);
        copy[MarkerKey] = type.ModelType;
        copy[LinearizationConfig.SectionName] = new LinearizationConfig
        {
            Method = type.Method,
            Liger = new LigerOptions
            {
                Family = family,
                Window = CodeWindow,
                Alpha = CodeMix,
                Beta = CodeMix,
                GateNormalizer = LigerOptions.DefaultNormalizer(family),
                Slots = poolSize,
            },
        }.ToJson();
        return copy;
    }

    /// <summary>Names in a translated model's checkpoint that their layer never reads (Qwen3's q/k RMSNorms), so
    /// loading ignores them rather than failing.</summary>
    public static IEnumerable<string> IgnoredTensors(LlamaConfig config) =>
        SourceModelType(config) == "liger_qwen3_gla"
            ? Enumerable.Range(0, config.NumHiddenLayers).SelectMany(i => new[]
                { $"model.layers.{i}.self_attn.q_norm.weight", $"model.layers.{i}.self_attn.k_norm.weight" })
            : Enumerable.Empty<string>();

    /// <summary>What <c>inspect</c> says about a translated model: where the authors' code and paper differ and which
    /// one this layer follows.</summary>
    public static IReadOnlyList<string> Notes(LlamaConfig config)
    {
        string? modelType = SourceModelType(config);
        if (modelType is null)
            return Array.Empty<string>();
        var notes = new List<string>
        {
            $"read from the Liger authors' {modelType} format",
            $"window {CodeWindow} keys as their code computes (flash-attn window_size=(64, 64): the query and 64 before it); the paper says 64",
            "decoding keeps the window's keys; their code's window branch has no cache when decoding",
            "their bfloat16 cast of the mixed output before o_proj is not repeated: the model computes in its own dtype",
        };
        if (modelType == "liger_qwen3_gla")
            notes.Add("q_norm / k_norm are not applied: their Qwen3 attention has none (the tensors are ignored)");
        return notes;
    }

    /// <summary>
    /// The authors' <c>config.json</c> for a model converted here, or an error naming the option their code cannot
    /// express (their layer is fixed: window 65, α = β = 0.5, the family's normalizer, no hybrid softmax layers).
    /// </summary>
    public static JsonObject ToAuthors(LlamaConfig config)
    {
        var lin = LinearizationConfig.FromModel(config)
                  ?? throw new LinearizeException($"{config.Source}: not a linearized model; convert it with --method liger-gla|liger-hgrn2|liger-gsa first");
        string Refuse(string what) =>
            throw new LinearizeException($"{config.Source}: {what}; the Liger authors' code has no equivalent, so --format liger refuses it");
        if (!Types.Any(t => t.Method == lin.Method))
            Refuse($"method {lin.Method} (their code has liger_gla, liger_hgrn2, liger_gsa)");
        var o = lin.Liger;
        if (o.Window != CodeWindow)
            Refuse($"'linearization.window' is {o.Window}, their window is {CodeWindow} keys (convert with --window {CodeWindow})");
        if (o.Alpha != CodeMix || o.Beta != CodeMix)
            Refuse($"'linearization.alpha'/'beta' are {o.Alpha}/{o.Beta}, their mix is 0.5/0.5");
        if (o.EffectiveNormalizer != LigerOptions.DefaultNormalizer(o.Family))
            Refuse($"'linearization.gate_normalizer' is {o.EffectiveNormalizer}, theirs is {LigerOptions.DefaultNormalizer(o.Family)}");
        if (o.RecurrentScale != 1.0)
            Refuse($"'linearization.recurrent_scale' is {o.RecurrentScale}, theirs is 1");
        if (o.NormalizeRecurrent)
            Refuse("'linearization.normalize_recurrent' is true");
        if (o.SparseCache > 0)
            Refuse($"'linearization.sparse_cache' is {o.SparseCache} (their layers have no sparse cache)");
        if (o.HasLearnedGate)
            Refuse("'linearization.gate' is learned (their gate comes from the keys)");
        if (o.OutputNorm != LigerOutputNorm.None)
            Refuse("'linearization.output_norm' is rmsnorm (their read-out is not normalized)");
        if (lin.SoftmaxLayers.Count > 0)
            Refuse($"'linearization.softmax_layers' keeps layers {string.Join(",", lin.SoftmaxLayers)} softmax");
        if (config.SlidingWindow is not null && config.ModelType != "mistral")
            Refuse($"'sliding_window' {config.SlidingWindow}");

        string? original = SourceModelType(config);
        // Their model types for this teacher and method, first the one a directory of theirs came from: a
        // liger_qwen3_gla directory loads as a Llama- or Qwen2-shaped teacher and goes back under its own name.
        var candidates = Types.Where(t => t.Method == lin.Method && t.BaseModelType == config.ModelType).Select(t => t.ModelType).ToList();
        if (original == "liger_qwen3_gla" && lin.Method == LinearizationMethods.LigerGla && config.ModelType == "llama")
            candidates.Insert(0, original);
        string modelType = original is not null && candidates.Contains(original) ? original
            : candidates.FirstOrDefault() ?? Refuse($"a {config.ModelType} teacher with {lin.Method} (their {lin.Method} model is Llama-only)");
        if (config.ModelType == "llama" && (config.QkvBias || config.OutputBias))
            Refuse("'attention_bias' is true (their Llama attention has no biases)");
        if (config.ModelType == "qwen2" && config.HeadDim * config.NumAttentionHeads != config.HiddenSize)
            Refuse($"'head_dim' {config.HeadDim} ≠ hidden_size / num_attention_heads");

        var type = Find(modelType)!;
        var json = (JsonObject)config.Raw.DeepClone();
        json.Remove(LinearizationConfig.SectionName);
        json.Remove(MarkerKey);
        json["model_type"] = modelType;
        json["architectures"] = new JsonArray(type.Architecture);
        if (lin.Method == LinearizationMethods.LigerGsa)
            json["pool_size"] = o.Slots ?? config.HeadDim;
        return json;
    }

    private static int IntOf(JsonObject obj, string key, string source)
    {
        var node = obj[key] ?? throw new LinearizeException($"{source}: missing required key '{key}'");
        string text = node.ToJsonString();
        if (node.GetValueKind() == JsonValueKind.Number &&
            double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue)
            return (int)d;
        throw new LinearizeException($"{source}: '{key}' must be an integer, got {text}");
    }

    private static bool HasQkvBias(string source)
    {
        if (!File.Exists(source))
            return false;
        string dir = Path.GetDirectoryName(Path.GetFullPath(source))!;
        if (!SafetensorsCheckpoint.Exists(dir))
            return false;
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        return ckpt.Contains("model.layers.0.self_attn.q_proj.bias");
    }
}
