using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>
/// A frozen linear projection whose weight (and bias) stay in the type they are stored in — bfloat16 in most
/// checkpoints — and are widened to the input's type for each product, one matrix at a time. Widening is exact, so
/// the output is the one a float32 linear layer holding the widened weight gives, bit for bit, in half the memory
/// while it is held. Parameter names are a linear layer's (<c>weight</c>, <c>bias</c>), so it loads from the same
/// checkpoint keys. <c>[…, in] → […, out]</c>.
/// </summary>
public sealed class WideningLinear : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;
    [ComponentName(Name = "bias")]
    private readonly Parameter? _bias;

    /// <summary>An uninitialised projection <c>[outFeatures, inFeatures]</c> of <paramref name="storedType"/>
    /// (load its values from a checkpoint).</summary>
    public WideningLinear(long inFeatures, long outFeatures, bool hasBias, ScalarType storedType) : base(nameof(WideningLinear))
    {
        _weight = new Parameter(empty(new[] { outFeatures, inFeatures }, storedType), requires_grad: false);
        _bias = hasBias ? new Parameter(zeros(new[] { outFeatures }, storedType), requires_grad: false) : null;
        RegisterComponents();
    }

    /// <summary>The stored type of the weight.</summary>
    public ScalarType StoredType => _weight.dtype;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var weight = _weight.dtype == x.dtype ? _weight : _weight.to(x.dtype);
        var bias = _bias is null || _bias.dtype == x.dtype ? _bias : _bias.to(x.dtype);
        return nn.functional.linear(x, weight, bias).MoveToOuterDisposeScope();
    }
}
