using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>Seeded random weights in the style of HF's <c>_init_weights</c>: matrices N(0, std), norms 1, biases 0.</summary>
public static class RandomWeights
{
    public const double DefaultStd = 0.02; // transformers LlamaConfig.initializer_range

    public static void Initialize(nn.Module model, ulong seed, double std = DefaultStd)
    {
        using var generator = new torch.Generator(seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters().OrderBy(kv => kv.name, StringComparer.Ordinal))
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith("layernorm.weight", StringComparison.Ordinal))
                p.FillWith(1.0);

            else if (name.EndsWith(".bias", StringComparison.Ordinal))
                p.normal_(0, std, generator);
            else
                p.normal_(0, std, generator);
        }
    }

    /// <summary>
    /// The same weights as <see cref="Initialize"/> on a new <see cref="LlamaForCausalLM"/> of <paramref name="config"/>
    /// (one generator, parameters in ordinal name order, drawn in float32), as entries a checkpoint writer produces one
    /// at a time in that order and stores as <paramref name="dtype"/>: no model, and never more than one float32
    /// tensor in memory. <see cref="SafetensorsWriter"/> writes in name order, which is what keeps the draws the same.
    /// </summary>
    public static IReadOnlyList<SafetensorsEntry> Entries(LlamaConfig config, ulong seed, ScalarType dtype, double std = DefaultStd)
    {
        var generator = new torch.Generator(seed);
        var layout = LlamaTensorLayout.For(config);
        var names = layout.Select(x => x.Name).ToArray();
        int next = 0;
        return layout.Select(x => new SafetensorsEntry(x.Name, dtype, x.Shape, () =>
        {
            // The draws depend on the order; a writer that asked out of order would silently change the weights.
            string expected = names[next++];
            if (expected != x.Name)
                throw new InvalidOperationException($"random weights asked for {x.Name} before {expected}");
            using var noGrad = no_grad();
            var f32 = torch.empty(x.Shape, ScalarType.Float32);
            if (x.Name.EndsWith("norm.weight", StringComparison.Ordinal) || x.Name.EndsWith("layernorm.weight", StringComparison.Ordinal))
                f32.FillWith(1.0);
            else
                f32.normal_(0, std, generator);
            if (next == names.Length)
                generator.Dispose();
            if (dtype == ScalarType.Float32)
                return f32;
            using (f32)
                return f32.to(dtype);
        }, Owned: true)).ToArray();
    }
}
