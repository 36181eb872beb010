using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Training.Lora;

/// <summary>
/// LoRA adapters on disk in PEFT's layout: <c>adapter_config.json</c> + <c>adapter_model.safetensors</c> with keys
/// <c>base_model.model.&lt;module path&gt;.lora_A.weight</c> / <c>lora_B.weight</c>, so PEFT's
/// <c>PeftModel.from_pretrained</c> can read them.
/// </summary>
public static class LoraAdapterFile
{
    public const string ConfigName = "adapter_config.json";
    public const string WeightsName = "adapter_model.safetensors";
    private const string PeftPrefix = "base_model.model.";

    public static void Save(nn.Module model, LoraOptions options, string directory, string? baseModel)
    {
        var tensors = LoraInjector.AdapterTensors(model);
        if (tensors.Count == 0)
            throw new LinearizeException("the model has no LoRA adapters to save");
        Directory.CreateDirectory(directory);
        SafetensorsWriter.Write(Path.Combine(directory, WeightsName),
            tensors.Select(kv => new KeyValuePair<string, Tensor>(PeftPrefix + kv.Key, kv.Value)));
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = options.Rank,
            ["lora_alpha"] = options.Alpha,
            ["lora_dropout"] = options.Dropout,
            ["target_modules"] = new JsonArray(options.Targets.Select(t => (JsonNode)t).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["base_model_name_or_path"] = baseModel,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    public static LoraOptions ReadOptions(string directory)
    {
        string path = Path.Combine(directory, ConfigName);
        if (!File.Exists(path))
            throw new LinearizeException($"{directory}: no {ConfigName} (not a LoRA adapter directory)");
        try
        {
            var j = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new LinearizeException($"{path}: expected a JSON object");
            if (j["peft_type"]?.GetValue<string>() is string type && type != "LORA")
                throw new LinearizeException($"{path}: peft_type '{type}' is not LORA");
            int r = j["r"]?.GetValue<int>() ?? throw new LinearizeException($"{path}: missing 'r'");
            var targets = j["target_modules"] as JsonArray ?? throw new LinearizeException($"{path}: missing 'target_modules' list");
            return new LoraOptions
            {
                Rank = r,
                Alpha = j["lora_alpha"]?.GetValue<double>() ?? r,
                Dropout = j["lora_dropout"]?.GetValue<double>() ?? 0,
                Targets = targets.Select(t => t!.GetValue<string>()).ToArray(),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new LinearizeException($"{path}: malformed adapter config ({e.Message})");
        }
    }

    /// <summary>Injects adapters as described by <paramref name="directory"/> and loads their weights (strictly).</summary>
    public static LoraOptions Load(nn.Module model, string directory)
    {
        var options = ReadOptions(directory);
        LoraInjector.Inject(model, options, seed: 0);
        using var file = SafetensorsFile.Open(Path.Combine(directory, WeightsName));
        var expected = LoraInjector.AdapterTensors(model);
        var names = file.Names.ToHashSet();
        var missing = expected.Keys.Where(k => !names.Contains(PeftPrefix + k)).ToList();
        var unexpected = names.Where(n => !n.StartsWith(PeftPrefix, StringComparison.Ordinal) || !expected.ContainsKey(n[PeftPrefix.Length..])).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new LinearizeException($"{file.FilePath}: adapter does not fit the model (missing: {string.Join(", ", missing.Take(5))}; unexpected: {string.Join(", ", unexpected.Take(5))})");
        using var noGrad = no_grad();
        foreach (var (name, p) in expected)
        {
            using var value = file.Read(PeftPrefix + name);
            if (!value.shape.SequenceEqual(p.shape))
                throw new LinearizeException($"{file.FilePath}: tensor '{PeftPrefix + name}' has shape [{string.Join(", ", value.shape)}], the model needs [{string.Join(", ", p.shape)}]");
            p.copy_(value);
        }

        return options;
    }
}
