using Linearize.Modeling.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>
/// The activation half of fake quantization, beside <see cref="WeightRounding"/>: in <see cref="WeightFormat.Q8"/> the
/// engine quantizes the input rows of every weight product to Q8 blocks too (as llama.cpp does for Q8_0 weights), and
/// with <see cref="EngineOptions.BFloat16Products"/> it rounds the inputs of bfloat16 products to bfloat16 (as llama.cpp
/// does for BF16 weights), so a float32 model computes what the engine computes only if the inputs of its projections
/// are rounded the same way. <see cref="Apply"/> hooks every <c>nn.Linear</c> (q/k/v/o, gate/up/down, a delta rule's β
/// projection) to round its input, and the final norm to round the head's input (the head is tied to the embedding in
/// some models, and then it is no module); the model runs its projections and final norm with <c>call</c> (PyTorch's
/// <c>module(x)</c>), so hooks fire. Each value is rounded by the engine's own rule
/// (<see cref="PackedMatrix.QuantizeBlock"/>, <see cref="PackedMatrix.ToBFloat16"/>), not a re-implementation in tensor
/// ops, on a CPU copy, which costs a copy per projection and nothing else.
/// </summary>
public static class ActivationRounding
{
    /// <summary>Hooks <paramref name="model"/> so its projections see Q8-rounded inputs when
    /// <paramref name="format"/> is <see cref="WeightFormat.Q8"/>, and bfloat16-rounded ones when it is
    /// <see cref="WeightFormat.BFloat16"/> with <paramref name="bfloat16Products"/> (what
    /// <see cref="EngineOptions.BFloat16Products"/> does); otherwise activations stay float32. Dispose the result to
    /// remove the hooks.</summary>
    public static IDisposable Apply(LlamaForCausalLM model, WeightFormat format, bool bfloat16Products = false)
    {
        var hooks = new Hooks();
        Func<Tensor, Tensor>? round = format switch
        {
            WeightFormat.Q8 => RoundQ8,
            WeightFormat.BFloat16 when bfloat16Products => RoundBFloat16,
            _ => null,
        };
        if (round is null)
            return hooks;
        foreach (var (name, module) in model.named_modules())
        {
            if (module is Linear linear && name != "lm_head")
                hooks.Add(linear.register_forward_pre_hook((_, x) => round(x)).remove);
            else if (name == "model.norm" && module is RmsNorm norm)
                hooks.Add(norm.register_forward_hook((_, _, y) => round(y)).remove);
        }

        return hooks;
    }

    /// <summary><paramref name="x"/> (float32, any shape) with every value rounded to the nearest bfloat16, as
    /// <see cref="Kernels.BFloat16Activations"/> rounds the engine's.</summary>
    public static Tensor RoundBFloat16(Tensor x)
    {
        var values = CpuValues(x);
        for (int i = 0; i < values.Length; i++)
            values[i] = PackedMatrix.FromBFloat16(PackedMatrix.ToBFloat16(values[i]));
        using var cpu = torch.tensor(values);
        return cpu.view(x.shape).to(x.device);
    }

    private static float[] CpuValues(Tensor x)
    {
        if (x.dtype != ScalarType.Float32)
            throw new LinearizeException($"activation rounding needs float32 activations, got {x.dtype}");
        return x.detach().cpu().contiguous().data<float>().ToArray();
    }

    /// <summary><paramref name="x"/> (float32, any shape) with each run of 32 values along its last dimension
    /// replaced by what its Q8 block stands for, <c>q · d</c>.</summary>
    public static Tensor RoundQ8(Tensor x)
    {
        int cols = (int)x.shape[^1];
        var values = CpuValues(x);
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
