using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// A Hugging Face <c>config.json</c> for the Llama family (<c>llama</c>, <c>mistral</c>, <c>qwen2</c>), parsed into
/// typed, validated fields. The original JSON object is kept, so keys this class does not interpret
/// (including a <c>linearization</c> section) survive a load → save round trip.
/// </summary>
public sealed class LlamaConfig
{
    public static readonly string[] SupportedModelTypes = { "llama", "mistral", "qwen2" };

    private LlamaConfig(JsonObject raw, string source)
    {
        Raw = raw;
        Source = source;
    }

    /// <summary>The whole JSON object as read (mutated by <see cref="ToJson"/> only for known keys).</summary>
    public JsonObject Raw { get; }

    /// <summary>Where the config came from (a path, or a description), for error messages.</summary>
    public string Source { get; }

    public string ModelType { get; private init; } = "llama";
    public int VocabSize { get; private init; }
    public int HiddenSize { get; private init; }
    public int IntermediateSize { get; private init; }
    public int NumHiddenLayers { get; private init; }
    public int NumAttentionHeads { get; private init; }
    public int NumKeyValueHeads { get; private init; }
    public int HeadDim { get; private init; }
    public double RmsNormEps { get; private init; }
    public double RopeTheta { get; private init; }
    public RopeScaling RopeScaling { get; private init; } = RopeScaling.None;
    public int MaxPositionEmbeddings { get; private init; }
    public bool TieWordEmbeddings { get; private init; }

    /// <summary>Bias on q/k/v projections (Llama's <c>attention_bias</c>; always true for Qwen2).</summary>
    public bool QkvBias { get; private init; }

    /// <summary>Bias on the output projection (Llama's <c>attention_bias</c>; false for Qwen2).</summary>
    public bool OutputBias { get; private init; }

    public bool MlpBias { get; private init; }
    public int? BosTokenId { get; private init; }
    public IReadOnlyList<int> EosTokenIds { get; private init; } = Array.Empty<int>();
    public string TorchDtype { get; private init; } = "float32";

    /// <summary>Mistral's sliding window (keys per query), when the config asks for one; null means full attention.</summary>
    public int? SlidingWindow { get; private init; }

    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;

    public static LlamaConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new LinearizeException($"{path}: not valid JSON ({JsonErrorText.Describe(e)})");
        }

        if (node is not JsonObject obj)
            throw new LinearizeException($"{path}: expected a JSON object");
        return FromJson(obj, path);
    }

    public static LlamaConfig Parse(string json, string source = "config.json")
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new LinearizeException($"{source}: not valid JSON ({JsonErrorText.Describe(e)})");
        }

        return node is JsonObject obj ? FromJson(obj, source) : throw new LinearizeException($"{source}: expected a JSON object");
    }

    public static LlamaConfig FromJson(JsonObject raw, string source)
    {
        // The Liger authors' directories name their own model_type; they load as the layer their code computes.
        if (raw["model_type"] is JsonValue authors && authors.GetValueKind() == JsonValueKind.String &&
            LigerFormat.Find(authors.GetValue<string>()) is not null)
            raw = LigerFormat.ToLinearized(raw, source);
        var r = new Reader(raw, source);
        string modelType = r.String("model_type", "llama");
        if (!SupportedModelTypes.Contains(modelType))
            throw new LinearizeException(
                $"{source}: unsupported model_type '{modelType}' (supported: {string.Join(", ", SupportedModelTypes)}, " +
                $"and the Liger authors' {string.Join(", ", LigerFormat.Types.Select(t => t.ModelType))})");
        string act = r.String("hidden_act", "silu");
        if (act != "silu")
            throw new LinearizeException($"{source}: unsupported hidden_act '{act}' (only silu is implemented)");

        int hidden = r.RequiredInt("hidden_size");
        int heads = r.RequiredInt("num_attention_heads");
        int kvHeads = r.Int("num_key_value_heads") ?? heads;
        int headDim = r.Int("head_dim") ?? (heads > 0 ? hidden / heads : 0);
        bool isQwen2 = modelType == "qwen2";
        bool attentionBias = r.Bool("attention_bias") ?? false;
        int? window = null;
        if (modelType == "mistral" || (isQwen2 && (r.Bool("use_sliding_window") ?? false)))
            window = r.Int("sliding_window");

        var config = new LlamaConfig(raw, source)
        {
            ModelType = modelType,
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.RequiredInt("intermediate_size"),
            NumHiddenLayers = r.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = r.Double("rms_norm_eps") ?? 1e-6,
            RopeTheta = r.Double("rope_theta") ?? 10000.0,
            RopeScaling = ParseRopeScaling(raw["rope_scaling"], source),
            MaxPositionEmbeddings = r.Int("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = r.Bool("tie_word_embeddings") ?? false,
            QkvBias = isQwen2 || attentionBias,
            OutputBias = !isQwen2 && attentionBias,
            MlpBias = r.Bool("mlp_bias") ?? false,
            BosTokenId = r.Int("bos_token_id"),
            EosTokenIds = r.IntOrList("eos_token_id"),
            TorchDtype = r.String("torch_dtype", "float32"),
            SlidingWindow = window,
        };
        config.Validate();
        return config;
    }

    private void Validate()
    {
        void Positive(string key, int value)
        {
            if (value <= 0)
                throw new LinearizeException($"{Source}: '{key}' must be positive, got {value}");
        }

        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("head_dim", HeadDim);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new LinearizeException(
                $"{Source}: num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({NumKeyValueHeads})");
        if (HeadDim % 2 != 0)
            throw new LinearizeException($"{Source}: head_dim ({HeadDim}) must be even for RoPE");
        if (RmsNormEps <= 0)
            throw new LinearizeException($"{Source}: rms_norm_eps must be positive");
        if (RopeTheta <= 0)
            throw new LinearizeException($"{Source}: rope_theta must be positive");
        if (TorchDtype is not ("float32" or "bfloat16" or "float16"))
            throw new LinearizeException($"{Source}: unsupported torch_dtype '{TorchDtype}' (supported: float32, bfloat16, float16)");
    }

    private static RopeScaling ParseRopeScaling(JsonNode? node, string source)
    {
        if (node is null)
            return RopeScaling.None;
        if (node is not JsonObject obj)
            throw new LinearizeException($"{source}: rope_scaling must be an object or null");
        var r = new Reader(obj, source + " rope_scaling");
        string type = obj["rope_type"] is not null ? r.String("rope_type", "default") : r.String("type", "default");
        switch (type)
        {
            case "default":
                return RopeScaling.None;
            case "linear":
                return new RopeScaling(RopeScalingType.Linear, Factor: r.Double("factor") ?? throw Missing("factor"));
            case "llama3":
                return new RopeScaling(
                    RopeScalingType.Llama3,
                    Factor: r.Double("factor") ?? throw Missing("factor"),
                    LowFreqFactor: r.Double("low_freq_factor") ?? throw Missing("low_freq_factor"),
                    HighFreqFactor: r.Double("high_freq_factor") ?? throw Missing("high_freq_factor"),
                    OriginalMaxPositionEmbeddings: r.Int("original_max_position_embeddings") ?? throw Missing("original_max_position_embeddings"));
            default:
                throw new LinearizeException(
                    $"{source}: unsupported rope_scaling type '{type}' (supported: {string.Join(", ", RopeScaling.SupportedTypes)})");
        }

        LinearizeException Missing(string key) => new($"{source}: rope_scaling type '{type}' requires '{key}'");
    }

    /// <summary>The config as JSON: every original key, with known keys rewritten from the typed fields.</summary>
    public string ToJson()
    {
        var copy = (JsonObject)Raw.DeepClone();
        return copy.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>A copy with some keys replaced (for example a <c>linearization</c> section or <c>torch_dtype</c>).</summary>
    public LlamaConfig With(Action<JsonObject> edit)
    {
        var copy = (JsonObject)Raw.DeepClone();
        edit(copy);
        return FromJson(copy, Source);
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson() + "\n");

    /// <summary>Typed access to a JSON object with errors that name the config and the key.</summary>
    private readonly struct Reader(JsonObject obj, string source)
    {
        public int RequiredInt(string key) =>
            Int(key) ?? throw new LinearizeException($"{source}: missing required key '{key}'");

        public int? Int(string key)
        {
            var node = obj[key];
            if (node is null)
                return null;
            // JsonValue.TryGetValue only matches the CLR type the node was built with; the JSON text is unambiguous.
            string text = node.ToJsonString();
            if (node.GetValueKind() == JsonValueKind.Number)
            {
                if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l) && l is >= int.MinValue and <= int.MaxValue)
                    return (int)l;
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && x == Math.Floor(x) && Math.Abs(x) < int.MaxValue)
                    return (int)x;
            }

            throw new LinearizeException($"{source}: '{key}' must be an integer, got {text}");
        }

        public double? Double(string key)
        {
            var node = obj[key];
            if (node is null)
                return null;
            string text = node.ToJsonString();
            if (node.GetValueKind() == JsonValueKind.Number &&
                double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
                return d;
            if (node.GetValueKind() == JsonValueKind.String &&
                double.TryParse(node.GetValue<string>(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed))
                return parsed;
            throw new LinearizeException($"{source}: '{key}' must be a number, got {text}");
        }

        public bool? Bool(string key)
        {
            var node = obj[key];
            if (node is null)
                return null;
            if (node.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
                return node.GetValue<bool>();
            throw new LinearizeException($"{source}: '{key}' must be true or false, got {node.ToJsonString()}");
        }

        public string String(string key, string fallback)
        {
            var node = obj[key];
            if (node is null)
                return fallback;
            if (node.GetValueKind() == JsonValueKind.String)
                return node.GetValue<string>();
            throw new LinearizeException($"{source}: '{key}' must be a string, got {node.ToJsonString()}");
        }

        public IReadOnlyList<int> IntOrList(string key)
        {
            var node = obj[key];
            if (node is null)
                return Array.Empty<int>();
            if (node is JsonArray arr)
            {
                var ids = new int[arr.Count];
                for (int i = 0; i < arr.Count; i++)
                    ids[i] = arr[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number &&
                             int.TryParse(v.ToJsonString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int x)
                        ? x
                        : throw new LinearizeException($"{source}: '{key}[{i}]' must be an integer");
                return ids;
            }

            return new[] { Int(key)!.Value };
        }
    }
}
