using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Linearize.Checkpoints.Authors;
using Linearize.Checkpoints.Configuration;
using Linearize.Checkpoints;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Interchange;

/// <summary>
/// The LoLCATs authors' checkpoints (<c>HazyResearch/lolcats</c>): a base Hugging Face model, an attention-transfer
/// <c>.pt</c> holding the trained <c>model.layers.N.self_attn.feature_map_{q,k}.mlp.layer</c> (+ <c>.bias</c> for
/// T2R) and <c>…window_factors</c>, a LoRA <c>.pt</c> with PEFT's <c>lora_A</c> / <c>lora_B</c>, and YAML configs whose
/// <c>attention</c> section names the layer. Our parameters carry their names, so reading is: convert the base with
/// the layer the YAML names, copy the attention tensors, merge the LoRA (<c>W += α/r · B A</c>). Writing is the
/// reverse and refuses what their configs cannot express.
/// </summary>
public static partial class LolcatsFormat
{
    public const string BaseDirectory = "base";
    public const string AttentionFile = "distill.pt";
    public const string ConfigFile = "config.yaml";

    private static readonly Dictionary<string, LinearizationMethod> AttentionTypes = new(StringComparer.Ordinal)
    {
        ["lolcats_llama_window_sw"] = LinearizationMethods.LolcatsSw,
        ["lolcats_llama_window_tk"] = LinearizationMethods.LolcatsTk,
    };

    [GeneratedRegex(@"^(?:base_model\.model\.)?(?<module>model\.layers\.\d+\.(?:self_attn|mlp)\.\w+_proj)\.(?<ab>lora_[AB])(?:\.default)?\.weight$")]
    private static partial Regex LoraName();

    /// <summary>The layer the YAML configs name, and the LoRA scale α / r when a <c>finetune</c> section is given.
    /// Errors name the file and the field.</summary>
    public static (LinearizationConfig Linearization, double? LoraAlpha, long? LoraRank) ReadConfig(IReadOnlyList<string> paths, LlamaConfig teacher)
    {
        Dictionary<string, object?>? attention = null, finetune = null;
        string attentionFile = "", finetuneFile = "";
        foreach (var path in paths)
        {
            var yaml = SimpleYaml.Load(path);
            if (yaml.TryGetValue("attention", out var a) && a is Dictionary<string, object?> am)
                (attention, attentionFile) = (am, path);
            if (yaml.TryGetValue("finetune", out var f) && f is Dictionary<string, object?> fm)
                (finetune, finetuneFile) = (fm, path);
        }

        if (attention is null)
            throw new LinearizeException($"{string.Join(", ", paths)}: no 'attention' section (the LoLCATs model config names the attention type there)");
        string F(string key) => $"{attentionFile}: 'attention.{key}'";
        string type = attention.GetValueOrDefault("attention_type") as string ?? throw new LinearizeException($"{F("attention_type")} is missing");
        if (!AttentionTypes.TryGetValue(type, out var method))
            throw new LinearizeException(type == "lolcats_llama"
                ? $"{F("attention_type")} is lolcats_llama (linear attention without a window), which this toolkit does not compute; supported: {string.Join(", ", AttentionTypes.Keys)}"
                : $"{F("attention_type")} '{type}' is not supported (supported: {string.Join(", ", AttentionTypes.Keys)})");
        if (teacher.ModelType is not ("llama" or "mistral"))
            throw new LinearizeException($"{teacher.Source}: a {teacher.ModelType} base; LoLCATs' {type} is for Llama and Mistral");
        var kernel = attention.GetValueOrDefault("learned_kernel_kwargs") as Dictionary<string, object?> ?? new();
        var mapArgs = attention.GetValueOrDefault("feature_map_kwargs") as Dictionary<string, object?> ?? new();
        if ((attention.GetValueOrDefault("learned_kernel") as string ?? "untied_head_einsum") != "untied_head_einsum")
            throw new LinearizeException($"{F("learned_kernel")} must be untied_head_einsum");
        if (attention.GetValueOrDefault("tie_qk_kernels") is true)
            throw new LinearizeException($"{F("tie_qk_kernels")} true is not supported (q and k maps are untied here)");
        if (kernel.GetValueOrDefault("skip_connection") is true)
            throw new LinearizeException($"{F("learned_kernel_kwargs.skip_connection")} true is not supported");
        string map = attention.GetValueOrDefault("feature_map") as string ?? "softmax_dim";
        bool bias = kernel.GetValueOrDefault("bias") is true;
        var kind = (map, mapArgs.GetValueOrDefault("fullspace") is not false, bias) switch
        {
            ("softmax_dim", true, false) => LolcatsFeatureMapKind.Hedgehog,
            ("relu", _, true) => LolcatsFeatureMapKind.T2r,
            _ => throw new LinearizeException(
                $"{F("feature_map")} '{map}' with fullspace/bias as given has no equivalent here (softmax_dim with fullspace and no bias = Hedgehog; relu with bias = T2R)"),
        };
        var lin = new LinearizationConfig
        {
            Method = method,
            Lolcats = new LolcatsOptions
            {
                Shape = method.Shape!.Value,
                Window = (int)Number(attention, "window_size", 64, F),
                FeatureMap = kind,
                FeatureDim = (int)Number(kernel, "feature_dim", 64, k => F("learned_kernel_kwargs." + k)),
                InitWindowFactor = Number(attention, "init_window_factor", new LolcatsOptions().InitWindowFactor, F),
                AffineAttentionFactors = attention.GetValueOrDefault("affine_attention_factors") is true,
                FeatureEps = Number(mapArgs, "eps", 1e-12, k => F("feature_map_kwargs." + k)),
            },
        };
        lin.Validate(teacher);

        if (finetune is null)
            return (lin, null, null);
        var kw = finetune.GetValueOrDefault("kwargs") as Dictionary<string, object?> ?? new();
        string G(string key) => $"{finetuneFile}: 'finetune.kwargs.{key}'";
        return (lin, Number(kw, "lora_alpha", double.NaN, G), (long)Number(kw, "r", double.NaN, G));
    }

    private static double Number(Dictionary<string, object?> map, string key, double fallback, Func<string, string> field)
    {
        var v = map.GetValueOrDefault(key);
        double d = v switch
        {
            null when !double.IsNaN(fallback) => fallback,
            long l => l,
            double x => x,
            string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double p) => p,
            null => throw new LinearizeException($"{field(key)} is missing"),
            _ => throw new LinearizeException($"{field(key)} must be a number, got {v}"),
        };
        return double.IsFinite(d) ? d : throw new LinearizeException($"{field(key)} must be finite");
    }

    /// <summary>Builds the model their checkpoints describe: <paramref name="teacher"/> converted with
    /// <paramref name="linearization"/>, the attention tensors of <paramref name="attention"/> copied in, and the LoRA
    /// of <paramref name="peft"/> (if any) merged into the projections.</summary>
    public static LlamaForCausalLM Import(LlamaForCausalLM teacher, LinearizationConfig linearization, string attention, string? peft,
        double? loraAlpha, long? loraRank)
    {
        var student = Converter.Convert(teacher, linearization);
        try
        {
            var weights = student.state_dict();
            using var noGrad = no_grad();
            var attn = PtReader.LoadStateDict(attention);
            try
            {
                var loaded = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (name, t) in attn)
                    Copy(attention, Normalize(name), t, weights, loaded);
                var missing = weights.Keys.Where(Converter.IsAddedParameter).Where(k => !loaded.Contains(k)).ToList();
                if (missing.Count > 0)
                    throw new LinearizeException($"{attention}: missing {missing.Count} attention tensor(s): {string.Join(", ", missing.Take(6))}{(missing.Count > 6 ? ", …" : "")}");
            }
            finally
            {
                foreach (var t in attn.Values)
                    t.Dispose();
            }

            if (peft is not null)
                MergeLora(peft, weights, loraAlpha, loraRank);
            return student;
        }
        catch
        {
            student.Dispose();
            throw;
        }
    }

    /// <summary>Their loader retries a state dict under <c>model.model.</c> and <c>base_model.model.model.</c>
    /// prefixes; the names are ours once those wrappers are gone.</summary>
    private static string Normalize(string name)
    {
        if (name.StartsWith("base_model.model.", StringComparison.Ordinal))
            name = name["base_model.model.".Length..];
        if (name.StartsWith("model.model.", StringComparison.Ordinal))
            name = name["model.".Length..];
        return name.Replace(".default.", ".", StringComparison.Ordinal);
    }

    private static void Copy(string file, string name, Tensor value, Dictionary<string, Tensor> weights, HashSet<string> loaded)
    {
        if (!weights.TryGetValue(name, out var target))
            throw new LinearizeException($"{file}: tensor '{name}' is not a parameter of the converted model");
        if (!value.shape.SequenceEqual(target.shape))
            throw new LinearizeException($"{file}: tensor '{name}' has shape [{string.Join(", ", value.shape)}], the model needs [{string.Join(", ", target.shape)}]");
        target.copy_(value);
        loaded.Add(name);
    }

    private static void MergeLora(string peft, Dictionary<string, Tensor> weights, double? alpha, long? rank)
    {
        var tensors = PtReader.LoadStateDict(peft);
        try
        {
            var pairs = new Dictionary<string, (Tensor? A, Tensor? B)>(StringComparer.Ordinal);
            var loaded = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, t) in tensors)
            {
                var m = LoraName().Match(name);
                if (!m.Success)
                {
                    Copy(peft, Normalize(name), t, weights, loaded); // anything else trained in stage 2 (e.g. window factors)
                    continue;
                }

                string module = m.Groups["module"].Value;
                var pair = pairs.GetValueOrDefault(module);
                pairs[module] = m.Groups["ab"].Value == "lora_A" ? (t, pair.B) : (pair.A, t);
            }

            if (pairs.Count > 0 && (alpha is null || rank is null))
                throw new LinearizeException($"{peft}: LoRA tensors, but no config gives finetune.kwargs.lora_alpha and r (pass the finetune YAML with --config)");
            foreach (var (module, (a, b)) in pairs)
            {
                if (a is null || b is null)
                    throw new LinearizeException($"{peft}: '{module}' has lora_{(a is null ? "A" : "B")} missing");
                if (!weights.TryGetValue(module + ".weight", out var w))
                    throw new LinearizeException($"{peft}: '{module}' is not a projection of the model");
                if (a.shape.Length != 2 || b.shape.Length != 2 || a.shape[0] != rank || b.shape[1] != rank || b.shape[0] != w.shape[0] || a.shape[1] != w.shape[1])
                    throw new LinearizeException(
                        $"{peft}: '{module}' lora_A [{string.Join(", ", a.shape)}] / lora_B [{string.Join(", ", b.shape)}] do not fit r = {rank} and weight [{string.Join(", ", w.shape)}]");
                using var delta = b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32));
                using var scaled = delta.Times(alpha!.Value / rank!.Value);
                using var wf = w.to(ScalarType.Float32);
                using var merged = wf.Plus(scaled);
                w.copy_(merged);
            }
        }
        finally
        {
            foreach (var t in tensors.Values)
                t.Dispose();
        }
    }

    /// <summary>The <c>attention</c> section of their model config for <paramref name="config"/>, or an error naming
    /// the option their code cannot express.</summary>
    public static string ToYaml(LlamaConfig config, string baseModel)
    {
        var lin = LinearizationConfig.FromModel(config);
        string Refuse(string what) =>
            throw new LinearizeException($"{config.Source}: {what}; the LoLCATs authors' code has no equivalent, so --format lolcats refuses it");
        if (lin is null || !lin.IsLolcats)
            Refuse(lin is null ? "not a linearized model" : $"method {lin.Method} (their code has lolcats-sw and lolcats-tk layers)");
        if (lin!.SoftmaxLayers.Count > 0)
            Refuse($"'linearization.softmax_layers' keeps layers {string.Join(",", lin.SoftmaxLayers)} softmax");
        if (config.ModelType is not ("llama" or "mistral"))
            Refuse($"a {config.ModelType} teacher");
        if (lin.Lolcats.SparseCache > 0)
            Refuse($"'linearization.sparse_cache' is {lin.Lolcats.SparseCache} (their layers have no sparse cache)");
        var o = lin.Lolcats;
        string type = AttentionTypes.Single(kv => kv.Value == lin.Method).Key;
        bool hedgehog = o.FeatureMap == LolcatsFeatureMapKind.Hedgehog;
        string D(double d) => d.ToString("R", CultureInfo.InvariantCulture);
        var s = new StringBuilder();
        s.AppendLine("# Written by linearize export --format lolcats: the model config of HazyResearch/lolcats.");
        s.AppendLine("name: llama");
        s.AppendLine("model:");
        s.AppendLine($"  pretrained_model_name_or_path: \"{baseModel}\"");
        s.AppendLine($"  torch_dtype: {config.TorchDtype}");
        s.AppendLine($"  rope_theta: {D(config.RopeTheta)}");
        s.AppendLine();
        s.AppendLine("attention:");
        s.AppendLine($"  attention_type: {type}");
        s.AppendLine($"  window_size: {o.Window}");
        s.AppendLine($"  affine_attention_factors: {(o.AffineAttentionFactors ? "true" : "false")}");
        s.AppendLine($"  init_window_factor: {D(o.InitWindowFactor)}");
        s.AppendLine($"  feature_map: {(hedgehog ? "softmax_dim" : "relu")}");
        s.AppendLine("  feature_map_kwargs:");
        s.AppendLine($"    eps: {D(o.FeatureEps)}");
        s.AppendLine("    fullspace: true");
        s.AppendLine("  layer_idx: null");
        s.AppendLine("  learned_kernel: untied_head_einsum");
        s.AppendLine("  learned_kernel_kwargs:");
        s.AppendLine($"    feature_dim: {o.EffectiveFeatureDim(config.HeadDim)}");
        s.AppendLine("    skip_connection: false");
        s.AppendLine($"    bias: {(hedgehog ? "false" : "true")}");
        s.AppendLine("    zero_init: false");
        s.AppendLine("  tie_qk_kernels: false");
        s.AppendLine("  train_qk: false");
        return s.ToString();
    }

    /// <summary>Writes <paramref name="model"/> as their three parts: <c>base/</c> (a plain Hugging Face model: the
    /// teacher's layout with this model's projections, LoRA already merged), <c>distill.pt</c> (the feature maps and
    /// window factors, as their trainer saves them) and <c>config.yaml</c>.</summary>
    public static void Export(LlamaForCausalLM model, string directory, string? tokenizerPath)
    {
        string yaml = ToYaml(model.Config, "./" + BaseDirectory);
        StagedDirectory.Write(directory, staging =>
        {
            var all = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)).ToList();
            string baseDir = Path.Combine(staging, BaseDirectory);
            Directory.CreateDirectory(baseDir);
            SafetensorsWriter.WriteCheckpoint(baseDir, all.Where(kv => !Converter.IsAddedParameter(kv.Key)).ToList());
            var teacher = model.Config.With(j =>
            {
                j.Remove(LinearizationConfig.SectionName);
                j["torch_dtype"] = model.DType == ScalarType.BFloat16 ? "bfloat16" : model.DType == ScalarType.Float16 ? "float16" : "float32";
            });
            teacher.Save(Path.Combine(baseDir, "config.json"));
            ModelLoader.CopyTokenizer(tokenizerPath, baseDir);
            PtWriter.Write(Path.Combine(staging, AttentionFile), all.Where(kv => Converter.IsAddedParameter(kv.Key)).ToList());
            AtomicFile.WriteAllText(Path.Combine(staging, ConfigFile), yaml);
        });
    }
}
