using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// Root-mean-square layer norm (HF <c>LlamaRMSNorm</c>): computed in float32, cast back, then scaled.
/// Input/output <c>[..., hidden]</c>.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;
    private readonly double _eps;

    public RmsNorm(long size, double eps, ScalarType dtype = ScalarType.Float32) : base(nameof(RmsNorm))
    {
        _eps = eps;
        _weight = new Parameter(torch.ones(size, dtype: dtype));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.to(ScalarType.Float32);
        var variance = h.Squared().mean(new long[] { -1 }, keepdim: true);
        h = h * torch.rsqrt(variance.Plus(_eps));

        return (_weight * h.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
