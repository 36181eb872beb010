using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// A Llama-family causal language model (HF <c>LlamaForCausalLM</c>). Parameter names equal the Hugging Face keys
/// (<c>model.layers.0.self_attn.q_proj.weight</c>). With tied embeddings there is no <c>lm_head</c> module: the
/// logits are computed with <c>model.embed_tokens.weight</c>, so the two can never drift apart.
/// <c>input_ids [B, T] → logits [B, T, V]</c> (float32).
/// </summary>
public sealed class LlamaForCausalLM : nn.Module<Tensor, ModelCache?, Tensor?, Tensor>
{
    [ComponentName(Name = "model")]
    private readonly LlamaModel _model;
    [ComponentName(Name = "lm_head")]
    private readonly Linear? _lmHead;

    /// <summary>Builds a model with random weights. <paramref name="mixerFactory"/> picks each layer's mixer
    /// (default: the teacher's softmax attention).</summary>
    public LlamaForCausalLM(LlamaConfig config, Func<LlamaConfig, int, TokenMixer>? mixerFactory = null) : base(nameof(LlamaForCausalLM))
    {
        Config = config;
        _model = new LlamaModel(config, mixerFactory ?? ((c, i) => new LlamaAttention(c, i)));
        _lmHead = config.TieWordEmbeddings ? null : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    private LlamaForCausalLM(LlamaConfig config, LlamaModel model) : base(nameof(LlamaForCausalLM))
    {
        Config = config;
        _model = model;
        RegisterComponents();
    }

    /// <summary>Only layers <c>[from, to)</c> (random weights, the names they have in the whole model), without
    /// embeddings, final norm or head: one block of block-wise attention transfer, run with
    /// <see cref="LlamaModel.ForwardLayers"/>, in the memory of those layers alone.</summary>
    /// <param name="built">Called with each layer (and its index) as soon as it is built, before the next one is.</param>
    public static LlamaForCausalLM Slice(LlamaConfig config, Func<LlamaConfig, int, TokenMixer> mixerFactory, int from, int to,
        Action<int, LlamaDecoderLayer>? built = null) =>
        new(config, new LlamaModel(config, mixerFactory, from, to, built));

    public LlamaConfig Config { get; }

    public LlamaModel Model => _model;

    /// <summary>The dtype of the weights (float32 or bfloat16).</summary>
    public ScalarType DType => _model.DType;

    /// <summary>Each distinct layer mixer with its count (<see cref="TokenMixer.Summarize"/>).</summary>
    public IReadOnlyList<string> DescribeMixers() => TokenMixer.Summarize(_model.Layers.Select(l => l.SelfAttention.Describe()));

    /// <summary>State-dict keys that a checkpoint may contain but this model does not hold (the tied head; tensors an
    /// authors' format carries that their layer never reads).</summary>
    public IReadOnlySet<string> IgnorableCheckpointKeys
    {
        get
        {
            var keys = new HashSet<string>(Checkpoints.Configuration.LigerFormat.IgnoredTensors(Config), StringComparer.Ordinal);
            if (Config.TieWordEmbeddings)
                keys.Add("lm_head.weight");
            return keys;
        }
    }

    public override Tensor forward(Tensor inputIds, ModelCache? cache, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        var h = _model.forward(inputIds, cache, attentionMask);
        return Head(h).MoveToOuterDisposeScope();
    }

    /// <summary>Logits (float32) for hidden states <c>[B, T, C]</c>.</summary>
    public Tensor Head(Tensor hidden)
    {
        var logits = _lmHead is null
            ? nn.functional.linear(hidden, _model.EmbedTokens.weight!)
            : _lmHead.call(hidden);
        return logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
    }

    public Tensor Forward(Tensor inputIds, ModelCache? cache = null, Tensor? attentionMask = null) =>
        forward(inputIds, cache, attentionMask);

    public ModelCache CreateCache() => new(Config.NumHiddenLayers);

    public long ParameterCount() => parameters().Sum(p => p.numel());
}
