using System.Globalization;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;

namespace Linearize.LinearAttention.Conversion;

/// <summary>
/// The <c>linearization</c> section of a converted model's <c>config.json</c>: which method replaces the attention
/// of which layers, with every constant spelled out. A model directory with this section loads as the converted
/// model; without it, as the teacher.
/// </summary>
public sealed record LinearizationConfig
{
    public const string SectionName = "linearization";

    public static readonly string[] Methods =
        { "liger-gla", "liger-hgrn2", "liger-gsa", "liger-mamba2", "liger-mlstm", "liger-retention", "swa", "lolcats-sw", "lolcats-tk" };

    /// <summary>One of <see cref="Methods"/>.</summary>
    public string Method { get; init; } = "liger-gla";

    /// <summary>Options of the Liger layers (window, α, β, normalizer, slots, chunking).</summary>
    public LigerOptions Liger { get; init; } = new();

    /// <summary>Options of the LoLCATs layers (window shape and size, feature map, window factor).</summary>
    public LolcatsOptions Lolcats { get; init; } = new();

    /// <summary>True for <c>lolcats-sw</c> and <c>lolcats-tk</c>.</summary>
    public bool IsLolcats => Method.StartsWith("lolcats-", StringComparison.Ordinal);

    /// <summary>The window shape a <c>lolcats-*</c> method names.</summary>
    public static LolcatsWindowShape ShapeOf(string method) =>
        method == "lolcats-tk" ? LolcatsWindowShape.Tk : LolcatsWindowShape.Sw;

    /// <summary>For <c>swa</c>: always-visible first tokens.</summary>
    public int Sinks { get; init; }

    /// <summary>Layers that stay full softmax attention (inter-layer hybrid).</summary>
    public IReadOnlyList<int> SoftmaxLayers { get; init; } = Array.Empty<int>();

    public bool IsSoftmaxLayer(int layer) => SoftmaxLayers.Contains(layer);

    /// <summary>The family a <c>liger-*</c> method names.</summary>
    public static LigerFamily FamilyOf(string method) => method switch
    {
        "liger-gla" => LigerFamily.Gla,
        "liger-hgrn2" => LigerFamily.Hgrn2,
        "liger-gsa" => LigerFamily.Gsa,
        "liger-mamba2" => LigerFamily.Mamba2,
        "liger-mlstm" => LigerFamily.Mlstm,
        "liger-retention" => LigerFamily.Retention,
        _ => throw new LinearizeException($"unknown method '{method}' (supported: {string.Join(", ", Methods)})"),
    };

    /// <summary>Layers <c>K−1, 2K−1, …</c> stay softmax: <c>--softmax-every 8</c> is the paper's 7:1 Liger:softmax pattern.</summary>
    public static IReadOnlyList<int> EveryKth(int k, int layers)
    {
        if (k < 1)
            throw new LinearizeException($"--softmax-every must be at least 1, got {k}");
        return Enumerable.Range(0, layers).Where(i => (i + 1) % k == 0).ToArray();
    }

    /// <summary>Parses <c>"3,7"</c>; every index must name a layer.</summary>
    public static IReadOnlyList<int> ParseLayerList(string text, int layers)
    {
        var result = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) || i < 0 || i >= layers)
                throw new LinearizeException($"--softmax-layers: '{part}' is not a layer index in 0..{layers - 1}");
            result.Add(i);
        }

        return result.Distinct().Order().ToArray();
    }

    public void Validate(LlamaConfig model)
    {
        if (!Methods.Contains(Method))
            throw new LinearizeException($"{model.Source}: unknown linearization method '{Method}' (supported: {string.Join(", ", Methods)})");
        if (Method != "swa" && !IsLolcats)
            FamilyOf(Method);
        Liger.Validate(model.HeadDim);
        Lolcats.Validate(model.HeadDim);
        if (Sinks < 0)
            throw new LinearizeException($"{model.Source}: sinks must be ≥ 0, got {Sinks}");
        foreach (int l in SoftmaxLayers)
            if (l < 0 || l >= model.NumHiddenLayers)
                throw new LinearizeException($"{model.Source}: softmax layer {l} is not in 0..{model.NumHiddenLayers - 1}");
    }

    public JsonObject ToJson() => IsLolcats ? LolcatsJson() : new()
    {
        ["method"] = Method,
        ["window"] = Liger.Window,
        ["alpha"] = Liger.Alpha,
        ["beta"] = Liger.Beta,
        ["gate_normalizer"] = Liger.EffectiveNormalizer,
        ["slots"] = Liger.Slots,
        ["recurrent_scale"] = Liger.RecurrentScale,
        ["normalize_recurrent"] = Liger.NormalizeRecurrent,
        ["chunk_size"] = Liger.ChunkSize,
        ["sub_chunk_size"] = Liger.SubChunkSize,
        ["sinks"] = Sinks,
        ["softmax_layers"] = new JsonArray(SoftmaxLayers.Select(i => (JsonNode)i).ToArray()),
    };

    private JsonObject LolcatsJson() => new()
    {
        ["method"] = Method,
        ["window"] = Lolcats.Window,
        ["feature_map"] = Lolcats.FeatureMap == LolcatsFeatureMapKind.Hedgehog ? "hedgehog" : "t2r",
        ["feature_dim"] = Lolcats.FeatureDim,
        ["init_window_factor"] = Lolcats.InitWindowFactor,
        ["affine_attention_factors"] = Lolcats.AffineAttentionFactors,
        ["feature_eps"] = Lolcats.FeatureEps,
        ["query_block"] = Lolcats.QueryBlock,
        ["softmax_layers"] = new JsonArray(SoftmaxLayers.Select(i => (JsonNode)i).ToArray()),
    };

    private static LolcatsOptions ReadLolcats(JsonObject j, string method, string where) => new()
    {
        Shape = ShapeOf(method),
        Window = j["window"]?.GetValue<int>() ?? 64,
        FeatureMap = (j["feature_map"]?.GetValue<string>() ?? "hedgehog") switch
        {
            "hedgehog" => LolcatsFeatureMapKind.Hedgehog,
            "t2r" => LolcatsFeatureMapKind.T2r,
            var other => throw new LinearizeException($"{where}: unknown feature_map '{other}' (supported: hedgehog, t2r)"),
        },
        FeatureDim = j["feature_dim"]?.GetValue<int?>(),
        InitWindowFactor = j["init_window_factor"]?.GetValue<double>() ?? new LolcatsOptions().InitWindowFactor,
        AffineAttentionFactors = j["affine_attention_factors"]?.GetValue<bool>() ?? false,
        FeatureEps = j["feature_eps"]?.GetValue<double>() ?? 1e-12,
        QueryBlock = j["query_block"]?.GetValue<int>() ?? 64,
    };

    /// <summary>Reads the section from a model config; null when the model is not linearized.</summary>
    public static LinearizationConfig? FromModel(LlamaConfig model)
    {
        if (model.Raw[SectionName] is not JsonObject j)
            return null;
        string where = $"{model.Source} ({SectionName})";
        try
        {
            string method = j["method"]?.GetValue<string>() ?? throw new LinearizeException($"{where}: missing 'method'");
            bool lolcats = method.StartsWith("lolcats-", StringComparison.Ordinal);
            if (!Methods.Contains(method))
                throw new LinearizeException($"{where}: unknown linearization method '{method}' (supported: {string.Join(", ", Methods)})");
            var family = method == "swa" || lolcats ? LigerFamily.Gla : FamilyOf(method);
            var config = new LinearizationConfig
            {
                Method = method,
                Sinks = j["sinks"]?.GetValue<int>() ?? 0,
                SoftmaxLayers = j["softmax_layers"] is JsonArray arr ? arr.Select(n => n!.GetValue<int>()).ToArray() : Array.Empty<int>(),
                Lolcats = lolcats ? ReadLolcats(j, method, where) : new LolcatsOptions(),
                Liger = new LigerOptions
                {
                    Family = family,
                    Window = j["window"]?.GetValue<int>() ?? 64,
                    Alpha = j["alpha"]?.GetValue<double>() ?? 0.5,
                    Beta = j["beta"]?.GetValue<double>() ?? 0.5,
                    GateNormalizer = j["gate_normalizer"]?.GetValue<double>(),
                    Slots = j["slots"]?.GetValue<int?>(),
                    RecurrentScale = j["recurrent_scale"]?.GetValue<double>() ?? 1.0,
                    NormalizeRecurrent = j["normalize_recurrent"]?.GetValue<bool>() ?? false,
                    ChunkSize = j["chunk_size"]?.GetValue<int>() ?? 64,
                    SubChunkSize = j["sub_chunk_size"]?.GetValue<int>() ?? 16,
                },
            };
            config.Validate(model);
            return config;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new LinearizeException($"{where}: a value has the wrong type ({e.Message})");
        }
    }
}
