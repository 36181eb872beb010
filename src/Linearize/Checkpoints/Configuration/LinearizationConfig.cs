using System.Globalization;
using System.Text.Json.Nodes;

namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// The <c>linearization</c> section of a converted model's <c>config.json</c>: which method replaces the attention
/// of which layers, with every constant spelled out. A model directory with this section loads as the converted
/// model; without it, as the teacher.
/// </summary>
public sealed record LinearizationConfig
{
    public const string SectionName = "linearization";

    /// <summary>The method every linearized layer uses (one entry of <see cref="LinearizationMethods"/>).</summary>
    public LinearizationMethod Method { get; init; } = LinearizationMethods.LigerGla;

    /// <summary>Options of the Liger layers (window, α, β, normalizer, slots, chunking).</summary>
    public LigerOptions Liger { get; init; } = new();

    /// <summary>Options of the LoLCATs layers (window shape and size, feature map, window factor).</summary>
    public LolcatsOptions Lolcats { get; init; } = new();

    /// <summary>True for the LoLCATs methods.</summary>
    public bool IsLolcats => Method.Kind == MethodKind.Lolcats;

    /// <summary>For <c>swa</c>: always-visible first tokens.</summary>
    public int Sinks { get; init; }

    /// <summary>Layers that stay full softmax attention (inter-layer hybrid).</summary>
    public IReadOnlyList<int> SoftmaxLayers { get; init; } = Array.Empty<int>();

    public bool IsSoftmaxLayer(int layer) => SoftmaxLayers.Contains(layer);

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
        ["method"] = Method.Name,
        ["window"] = Liger.Window,
        ["alpha"] = Liger.Alpha,
        ["beta"] = Liger.Beta,
        ["gate_normalizer"] = Liger.EffectiveNormalizer,
        ["slots"] = Liger.Slots,
        ["recurrent_scale"] = Liger.RecurrentScale,
        ["normalize_recurrent"] = Liger.NormalizeRecurrent,
        ["negative_eigenvalues"] = Liger.NegativeEigenvalues,
        ["sparse_cache"] = Liger.SparseCache,
        ["gate"] = Liger.Gate == LigerGate.Learned ? "learned" : "keys",
        ["learned_gate_bias"] = Liger.LearnedGateBias,
        ["output_norm"] = Liger.OutputNorm == LigerOutputNorm.RmsNorm ? "rmsnorm" : "none",
        ["chunk_size"] = Liger.ChunkSize,
        ["sub_chunk_size"] = Liger.SubChunkSize,
        ["sinks"] = Sinks,
        ["softmax_layers"] = new JsonArray(SoftmaxLayers.Select(i => (JsonNode)i).ToArray()),
    };

    private JsonObject LolcatsJson() => new()
    {
        ["method"] = Method.Name,
        ["window"] = Lolcats.Window,
        ["feature_map"] = Lolcats.FeatureMap == LolcatsFeatureMapKind.Hedgehog ? "hedgehog" : "t2r",
        ["feature_dim"] = Lolcats.FeatureDim,
        ["init_window_factor"] = Lolcats.InitWindowFactor,
        ["affine_attention_factors"] = Lolcats.AffineAttentionFactors,
        ["feature_eps"] = Lolcats.FeatureEps,
        ["query_block"] = Lolcats.QueryBlock,
        ["sparse_cache"] = Lolcats.SparseCache,
        ["softmax_layers"] = new JsonArray(SoftmaxLayers.Select(i => (JsonNode)i).ToArray()),
    };

    /// <summary>Reads the section from a model config; null when the model is not linearized. Every error names the
    /// file and the field (<c>linearization.window</c>), since a hand-edited config is where these come from.</summary>
    public static LinearizationConfig? FromModel(LlamaConfig model)
    {
        if (model.Raw[SectionName] is not JsonObject j)
            return null;
        var f = new SectionReader(j, model.Source);
        string name = f.String("method") ?? throw f.Error("method", "is missing");
        var method = LinearizationMethods.Find(name)
            ?? throw f.Error("method", $"'{name}' is not a linearization method (supported: {string.Join(", ", LinearizationMethods.Names)})");
        bool lolcats = method.Kind == MethodKind.Lolcats;
        var family = method.Family ?? LigerFamily.Gla;
        int window = f.Int("window", min: 1) ?? 64;
        var softmaxLayers = f.IntArray("softmax_layers");
        foreach (int l in softmaxLayers)
            if (l < 0 || l >= model.NumHiddenLayers)
                throw f.Error("softmax_layers", $"holds {l}, which is not a layer in 0..{model.NumHiddenLayers - 1}");
        LolcatsOptions lolcatsOptions = new();
        if (lolcats)
        {
            string featureMap = f.String("feature_map") ?? "hedgehog";
            lolcatsOptions = new LolcatsOptions
            {
                Shape = method.Shape!.Value,
                Window = window,
                FeatureMap = featureMap switch
                {
                    "hedgehog" => LolcatsFeatureMapKind.Hedgehog,
                    "t2r" => LolcatsFeatureMapKind.T2r,
                    _ => throw f.Error("feature_map", $"'{featureMap}' is not a feature map (supported: hedgehog, t2r)"),
                },
                FeatureDim = f.Int("feature_dim", min: 1),
                InitWindowFactor = f.Double("init_window_factor") ?? new LolcatsOptions().InitWindowFactor,
                AffineAttentionFactors = f.Bool("affine_attention_factors") ?? false,
                FeatureEps = f.Double("feature_eps", min: 0) ?? 1e-12,
                QueryBlock = f.Int("query_block", min: 1) ?? 64,
                SparseCache = f.Int("sparse_cache", min: 0) ?? 0,
            };
        }

        int chunk = f.Int("chunk_size", min: 1) ?? 64, subChunk = f.Int("sub_chunk_size", min: 1) ?? 16;
        if (chunk % subChunk != 0)
            throw f.Error("chunk_size", $"({chunk}) must be a multiple of sub_chunk_size ({subChunk})");
        double? normalizer = f.Double("gate_normalizer");
        if (normalizer is <= 0)
            throw f.Error("gate_normalizer", $"must be positive, got {normalizer}");
        string gate = f.String("gate") ?? "keys", outputNorm = f.String("output_norm") ?? "none";
        var config = new LinearizationConfig
        {
            Method = method,
            Sinks = f.Int("sinks", min: 0) ?? 0,
            SoftmaxLayers = softmaxLayers,
            Lolcats = lolcatsOptions,
            Liger = new LigerOptions
            {
                Family = family,
                Window = window,
                Alpha = f.Double("alpha") ?? 0.5,
                Beta = f.Double("beta") ?? 0.5,
                GateNormalizer = normalizer,
                Slots = f.Int("slots", min: 1),
                RecurrentScale = f.Double("recurrent_scale") ?? 1.0,
                NormalizeRecurrent = f.Bool("normalize_recurrent") ?? false,
                NegativeEigenvalues = f.Bool("negative_eigenvalues") ?? false,
                SparseCache = lolcats ? 0 : f.Int("sparse_cache", min: 0) ?? 0,
                Gate = gate switch
                {
                    "keys" => LigerGate.Keys,
                    "learned" => LigerGate.Learned,
                    _ => throw f.Error("gate", $"'{gate}' is not a gate (supported: keys, learned)"),
                },
                LearnedGateBias = f.Double("learned_gate_bias"),
                OutputNorm = outputNorm switch
                {
                    "none" => LigerOutputNorm.None,
                    "rmsnorm" => LigerOutputNorm.RmsNorm,
                    _ => throw f.Error("output_norm", $"'{outputNorm}' is not an output norm (supported: none, rmsnorm)"),
                },
                ChunkSize = chunk,
                SubChunkSize = subChunk,
            },
        };
        config.Validate(model);
        return config;
    }
}
