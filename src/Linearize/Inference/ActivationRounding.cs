using Linearize.Modeling.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>
/// The activation half of fake quantization, beside <see cref="WeightRounding"/>: in <see cref="WeightFormat.Q8"/> the
/// engine quantizes the input rows of every weight product to Q8 blocks too (as llama.cpp does for Q8_0 weights), so a
/// float32 model computes what the engine computes only if the inputs of its projections are rounded the same way.
/// <see cref="Apply"/> hooks every <c>nn.Linear</c> (q/k/v/o, gate/up/down, a delta rule's β projection) to round
/// its input, and the final norm to round the head's input (the head is tied to the embedding in some models, and
/// then it is no module); the model runs its projections and final norm with <c>call</c> (PyTorch's <c>module(x)</c>),
/// so hooks fire. Each row is rounded by <see cref="PackedMatrix.QuantizeBlock"/> itself — the engine's rule,
/// not a re-implementation in tensor ops — on a CPU copy, which costs a copy per projection and nothing else.
/// </summary>
public static class ActivationRounding
{
    /// <summary>Hooks <paramref name="model"/> so its projections see Q8-rounded inputs when
    /// <paramref name="format"/> is <see cref="WeightFormat.Q8"/> (other formats keep float32 activations); dispose the
    /// result to remove the hooks.</summary>
    public static IDisposable Apply(LlamaForCausalLM model, WeightFormat format)
    {
        var hooks = new Hooks();
        if (format != WeightFormat.Q8)
            return hooks;
        foreach (var (name, module) in model.named_modules())
        {
            if (module is Linear linear && name != "lm_head")
                hooks.Add(linear.register_forward_pre_hook((_, x) => RoundQ8(x)).remove);
            else if (name == "model.norm" && module is RmsNorm norm)
                hooks.Add(norm.register_forward_hook((_, _, y) => RoundQ8(y)).remove);
        }

        return hooks;
    }

    /// <summary><paramref name="x"/> (float32, any shape) with each run of 32 values along its last dimension
    /// replaced by what its Q8 block stands for, <c>q · d</c>.</summary>
    public static Tensor RoundQ8(Tensor x)
    {
        if (x.dtype != ScalarType.Float32)
            throw new LinearizeException($"activation rounding needs float32 activations, got {x.dtype}");
        int cols = (int)x.shape[^1];
        var values = x.detach().cpu().contiguous().data<float>().ToArray();
        var quants = new sbyte[PackedMatrix.Q8BlockSize];
        for (int start = 0; start < values.Length; start += cols)
            for (int b = 0; b < cols; b += PackedMatrix.Q8BlockSize)
            {
                var block = values.AsSpan(start + b, Math.Min(PackedMatrix.Q8BlockSize, cols - b));
                float d = PackedMatrix.QuantizeBlock(block, quants);
                for (int i = 0; i < block.Length; i++)
                    block[i] = quants[i] * d;
            }

        using var cpu = torch.tensor(values);
        return cpu.view(x.shape).to(x.device);
    }

    private sealed class Hooks : IDisposable
    {
        private readonly List<Action> _removers = new();

        public void Add(Action remove) => _removers.Add(remove);

        public void Dispose()
        {
            foreach (var remove in _removers)
                remove();
            _removers.Clear();
        }
    }
}
