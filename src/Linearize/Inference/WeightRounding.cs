using System.Runtime.InteropServices;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>
/// Fake quantization: rounds every weight matrix of a TorchSharp model (embedding, projections, head) in place to
/// what a <see cref="WeightFormat"/> stores, leaving norms and biases alone — the values the decode engine multiplies
/// by. A float32 model treated this way computes what the engine computes in that format, so its perplexity is the
/// format's perplexity cost and tests can compare the engine with it at float32 tolerance.
/// </summary>
public static class WeightRounding
{
    public static void Apply(LlamaForCausalLM model, WeightFormat format)
    {
        if (format == WeightFormat.Float32)
            return;
        if (model.DType != ScalarType.Float32)
            throw new LinearizeException("weight rounding needs a float32 model (load it without --dtype bfloat16)");
        using var noGrad = no_grad();
        foreach (var (name, tensor) in model.state_dict())
        {
            if (tensor.dim() != 2 || !name.EndsWith(".weight", StringComparison.Ordinal))
                continue;
            int rows = (int)tensor.shape[0], cols = (int)tensor.shape[1];
            var values = MemoryMarshal.Cast<byte, float>(tensor.contiguous().bytes).ToArray();
            PackedMatrix.RoundTrip(values, rows, cols, format);
            tensor.copy_(torch.tensor(values).view(rows, cols));
        }
    }
}
