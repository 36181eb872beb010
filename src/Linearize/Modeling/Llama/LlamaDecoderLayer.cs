using Linearize.Checkpoints;
using TorchSharp.Utils;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>Pre-norm decoder block (HF <c>LlamaDecoderLayer</c>): <c>x + mixer(norm(x))</c>, then <c>x + mlp(norm(x))</c>.</summary>
public sealed class LlamaDecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    [ComponentName(Name = "input_layernorm")]
    private readonly RmsNorm _inputLayerNorm;
    [ComponentName(Name = "self_attn")]
    private readonly TokenMixer _selfAttn;
    [ComponentName(Name = "post_attention_layernorm")]
    private readonly RmsNorm _postAttentionLayerNorm;
    [ComponentName(Name = "mlp")]
    private readonly LlamaMlp _mlp;

    public LlamaDecoderLayer(LlamaConfig config, TokenMixer mixer) : base(nameof(LlamaDecoderLayer))
    {
        _inputLayerNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        _selfAttn = mixer;
        _postAttentionLayerNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        _mlp = new LlamaMlp(config.HiddenSize, config.IntermediateSize, config.MlpBias);
        RegisterComponents();
    }

    public TokenMixer SelfAttention => _selfAttn;

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(_selfAttn.forward(_inputLayerNorm.forward(x), ctx));
        var o = h.Plus(_mlp.forward(_postAttentionLayerNorm.forward(h)));

        return o.MoveToOuterDisposeScope();
    }
}
