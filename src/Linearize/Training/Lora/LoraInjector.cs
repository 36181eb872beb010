using Linearize.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Linearize.Training.Lora;

/// <summary>
/// Puts LoRA adapters on the projections named in <see cref="LoraOptions.Targets"/> (PEFT's <c>inject_adapter</c> by
/// module name), freezes every other parameter, and folds adapters back into plain linear layers.
/// </summary>
public static class LoraInjector
{
    /// <summary>What was injected: adapter parameter names and counts.</summary>
    public sealed record Report(int Modules, long TrainableParameters, long TotalParameters, IReadOnlyList<string> AdapterNames)
    {
        public double TrainableFraction => TotalParameters == 0 ? 0 : TrainableParameters / (double)TotalParameters;
    }

    /// <summary>Wraps every targeted projection of <paramref name="model"/> in a <see cref="LoraLinear"/>; freezes the rest.</summary>
    /// <param name="skipLayers">Decoder layers left without adapters (e.g. softmax layers of a hybrid, as LoLCATs does).</param>
    public static Report Inject(nn.Module model, LoraOptions options, ulong seed, ISet<int>? skipLayers = null)
    {
        options.Validate();
        foreach (var p in model.parameters())
            p.requires_grad = false;
        int modules = 0;
        torch.manual_seed((long)seed); // lora_A's Kaiming init draws from the global generator
        foreach (var (path, host) in Hosts(model))
        {
            if (skipLayers is not null && LayerIndex(path) is int layer && skipLayers.Contains(layer))
                continue;
            foreach (var name in host.ProjectionNames.Where(options.Targets.Contains))
            {
                if (host.GetProjection(name) is LoraLinear)
                    throw new LinearizeException($"{path}.{name} already has a LoRA adapter");
                if (host.GetProjection(name) is not Linear linear)
                    continue;
                host.SetProjection(name, new LoraLinear(linear, options));
                modules++;
            }
        }

        if (modules == 0)
            throw new LinearizeException($"no module matched the LoRA targets ({string.Join(", ", options.Targets)})");
        var adapters = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        return new Report(modules, adapters.Sum(p => p.parameter.numel()), model.parameters().Sum(p => p.numel()),
            adapters.Select(p => p.name).ToList());
    }

    /// <summary>Replaces every <see cref="LoraLinear"/> by its merged plain linear layer. Returns how many were merged.</summary>
    public static int Merge(nn.Module model)
    {
        int merged = 0;
        foreach (var (_, host) in Hosts(model))
        {
            foreach (var name in host.ProjectionNames)
            {
                if (host.GetProjection(name) is LoraLinear lora)
                {
                    host.SetProjection(name, lora.Merge());
                    merged++;
                }
            }
        }

        return merged;
    }

    /// <summary>The adapter tensors (trainable LoRA weights) by their in-model names.</summary>
    public static Dictionary<string, Tensor> AdapterTensors(nn.Module model) =>
        model.named_parameters().Where(p => p.name.Contains(".lora_A.") || p.name.Contains(".lora_B."))
            .ToDictionary(p => p.name, p => (Tensor)p.parameter);

    internal static IEnumerable<(string Path, IProjectionHost Host)> Hosts(nn.Module model) =>
        model.named_modules().Where(m => m.module is IProjectionHost).Select(m => (m.name, (IProjectionHost)m.module));

    private static int? LayerIndex(string path)
    {
        var parts = path.Split('.');
        int i = Array.IndexOf(parts, "layers");
        return i >= 0 && i + 1 < parts.Length && int.TryParse(parts[i + 1], out int layer) ? layer : null;
    }
}
