using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// A LoLCATs feature map φ (reference <c>FeatureMap</c> with a <c>FeatureMapMLP</c>, docs/METHODS.md §2.3), applied per head to
/// post-RoPE queries or keys. Hedgehog: <c>clamp_min([softmax(xW) ⊕ softmax(−xW)], eps)</c> (2·d' features, both
/// softmaxes over the feature dimension); T2R: <c>clamp_min(ReLU(xW + b), eps)</c>. The state-dict name of the weight is
/// the reference's, <c>feature_map_q.mlp.layer</c>. <c>[B, H, T, D] → [B, H, T, F']</c>, float32.
/// </summary>
public sealed class LolcatsFeatureMap : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "mlp")]
    private readonly FeatureMapMlp _mlp;
    private readonly LolcatsFeatureMapKind _kind;
    private readonly double _eps;

    public LolcatsFeatureMap(int heads, int headDim, LolcatsOptions options) : base(nameof(LolcatsFeatureMap))
    {
        _kind = options.FeatureMap;
        _eps = options.FeatureEps;
        _mlp = new FeatureMapMlp(heads, headDim, options.EffectiveFeatureDim(headDim), bias: _kind == LolcatsFeatureMapKind.T2r);
        RegisterComponents();
    }

    public FeatureMapMlp Mlp => _mlp;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = _mlp.forward(x);
        var phi = _kind == LolcatsFeatureMapKind.Hedgehog
            ? cat(new[] { y.softmax(-1), (-y).softmax(-1) }, -1)
            : nn.functional.relu(y);
        return phi.ClampMin(_eps).MoveToOuterDisposeScope();

    }
}
