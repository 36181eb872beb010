using Linearize.Modeling.Llama;

namespace Linearize.Training;

/// <summary>
/// Full-parameter training beside (or instead of) LoRA: marks parameters trainable by name, so the
/// <see cref="Trainer"/> — which trains whatever requires a gradient — updates them with everything it guarantees
/// (exact resume, atomic checkpoints, the non-finite-loss stop).
/// </summary>
public static class FullTraining
{
    /// <summary>Makes every parameter whose name contains one of <paramref name="fragments"/> (<c>*</c>: all) trainable;
    /// returns how many tensors and values that adds. A fragment that matches nothing is an error.</summary>
    public static (int Tensors, long Values) Unfreeze(LlamaForCausalLM model, IReadOnlyList<string> fragments)
    {
        if (fragments.Count == 0)
            return (0, 0);
        var named = model.named_parameters().ToList();
        int tensors = 0;
        long values = 0;
        foreach (var fragment in fragments)
            if (fragment != "*" && !named.Any(p => p.name.Contains(fragment, StringComparison.Ordinal)))
                throw new LinearizeException(
                    $"--train-modules: '{fragment}' matches no parameter (names look like {string.Join(", ", named.Take(3).Select(p => p.name))}, …)");
        foreach (var (name, p) in named)
        {
            // LoRA's own adapters are trained anyway; everything else that matches is marked (a freshly loaded model's
            // parameters may already require a gradient: they are counted all the same).
            if (name.Contains("lora_", StringComparison.Ordinal) || !(fragments.Contains("*") || fragments.Any(f => name.Contains(f, StringComparison.Ordinal))))
                continue;
            if (p.dtype != TorchSharp.torch.ScalarType.Float32)
                throw new LinearizeException($"full training needs float32 weights ({name} is {p.dtype}); drop --dtype bfloat16");
            p.requires_grad = true;
            tensors++;
            values += p.numel();
        }

        return (tensors, values);
    }
}
