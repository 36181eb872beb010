using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// The learned projection of a LoLCATs feature map (reference <c>FeatureMapMLP</c>, docs/METHODS.md §2.3): one <c>d × d'</c>
/// matrix per head, <c>layer [H, D, F]</c>, and for T2R a scalar bias per head <c>bias [1, H, 1, 1]</c>. Initialised as
/// the reference's <c>zero_init_</c> (what its README commands run): each head's rectangular identity
/// <c>eye(d, d')</c>, which keeps the first d' coordinates. <c>[B, H, T, D] → [B, H, T, F]</c>, float32.
/// </summary>
public sealed class FeatureMapMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "layer")]
    private readonly Parameter _layer;
    [ComponentName(Name = "bias")]
    private readonly Parameter? _bias;

    public FeatureMapMlp(int heads, int headDim, int featureDim, bool bias) : base(nameof(FeatureMapMlp))
    {
        _layer = new Parameter(eye(headDim, featureDim, ScalarType.Float32).unsqueeze(0).repeat(heads, 1, 1));
        if (bias)
            _bias = new Parameter(zeros(1, heads, 1, 1, ScalarType.Float32));
        RegisterComponents();
    }

    /// <summary><c>[H, D, F]</c>.</summary>
    public Parameter Weight => _layer;

    public Parameter? Bias => _bias;

    public override Tensor forward(Tensor x)
    {
        var y = einsum("bhtd,hdf->bhtf", x.to(ScalarType.Float32), _layer.to(ScalarType.Float32));
        return _bias is null ? y : y.Plus(_bias.to(ScalarType.Float32));

    }
}
