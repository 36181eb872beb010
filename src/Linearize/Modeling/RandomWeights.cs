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
}
