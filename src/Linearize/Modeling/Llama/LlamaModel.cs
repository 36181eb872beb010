using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// The decoder stack without the LM head (HF <c>LlamaModel</c>): embeddings, layers, final norm.
/// <c>input_ids [B, T] → hidden [B, T, C]</c>.
/// </summary>
public sealed class LlamaModel : nn.Module<Tensor, ModelCache?, Tensor?, Tensor>
{
    [ComponentName(Name = "embed_tokens")]
    private readonly Embedding? _embedTokens;
    [ComponentName(Name = "layers")]
    private readonly nn.Module _layerModules; // ModuleList (the whole stack) or DecoderLayerSlice (layers [first, first + n))
    [ComponentName(Name = "norm")]
    private readonly RmsNorm? _norm;

    private readonly LlamaDecoderLayer[] _layers; // the layers held, in order; the first is layer _firstLayer
    private readonly int _firstLayer;
    private readonly RotaryEmbedding _rope; // plain field: no state to save (see RotaryEmbedding remarks)
    private readonly int _vocabSize;

    public LlamaModel(LlamaConfig config, Func<LlamaConfig, int, TokenMixer> mixerFactory) : base(nameof(LlamaModel))
    {
        _vocabSize = config.VocabSize;
        _embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        var list = new ModuleList<LlamaDecoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
            list.Add(new LlamaDecoderLayer(config, mixerFactory(config, i)));
        _layerModules = list;
        _layers = list.ToArray();
        _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        _rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
        RegisterComponents();
    }

    /// <summary>Only layers <c>[from, to)</c>, under the names they have in the whole stack
    /// (<c>layers.{i}.…</c>), with RoPE but without embeddings or final norm: what <see cref="ForwardLayers"/> needs to
    /// train or run one block, in the memory of that block (block-wise attention transfer, docs/METHODS.md §2.7).</summary>
    /// <param name="built">Called with each layer as soon as it is built, before the next one is (to narrow its frozen
    /// weights while only one layer is wide).</param>
    internal LlamaModel(LlamaConfig config, Func<LlamaConfig, int, TokenMixer> mixerFactory, int from, int to,
        Action<int, LlamaDecoderLayer>? built) : base(nameof(LlamaModel))
    {
        if (from < 0 || to > config.NumHiddenLayers || from >= to)
            throw new ArgumentOutOfRangeException(nameof(from), $"layers [{from}, {to}) of {config.NumHiddenLayers}");
        _vocabSize = config.VocabSize;
        _firstLayer = from;
        _layers = new LlamaDecoderLayer[to - from];
        for (int i = from; i < to; i++)
        {
            _layers[i - from] = new LlamaDecoderLayer(config, mixerFactory(config, i));
            built?.Invoke(i, _layers[i - from]);
        }

        _layerModules = new DecoderLayerSlice(from, _layers);
        _rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
        RegisterComponents();
    }

    /// <summary>The token embeddings (not held by a slice of layers).</summary>
    public Embedding EmbedTokens => _embedTokens ?? throw SliceOnly("embeddings");

    /// <summary>The layers held: every layer, or for a slice layers <see cref="FirstLayer"/>… in order.</summary>
    public IReadOnlyList<LlamaDecoderLayer> Layers => _layers;

    /// <summary>The index of <c>Layers[0]</c> in the whole stack (0 unless this is a slice).</summary>
    public int FirstLayer => _firstLayer;

    /// <summary>True when this holds only some layers (no embeddings, no final norm).</summary>
    public bool IsSlice => _embedTokens is null;

    /// <summary>Layer <paramref name="index"/> of the whole stack (it must be held).</summary>
    public LlamaDecoderLayer Layer(int index) =>
        index >= _firstLayer && index < _firstLayer + _layers.Length
            ? _layers[index - _firstLayer]
            : throw new ArgumentOutOfRangeException(nameof(index), $"layer {index} is not held (layers [{_firstLayer}, {_firstLayer + _layers.Length}))");

    /// <summary>The dtype of the weights (of a slice: of its first norm, the type it computes in; frozen projections
    /// may be stored narrower, see <see cref="WideningLinear"/>).</summary>
    public ScalarType DType => _embedTokens?.weight!.dtype ?? _layers[0].parameters().First().dtype;

    public RotaryEmbedding Rope => _rope;

    /// <summary>Recompute each layer's activations in the backward pass instead of keeping them (<see cref="LayerCheckpoint"/>):
    /// applies to forward passes that record gradients and use no cache (training).</summary>
    public bool CheckpointActivations { get; set; }

    /// <summary>
    /// Runs the stack on <paramref name="inputIds"/> <c>[B, T]</c>.
    /// <paramref name="attentionMask"/> (optional, <c>[B, past + T]</c>, 1 = token, 0 = padding) follows the Hugging Face
    /// convention: it covers the cached positions too, and positions are counted over real tokens only, so
    /// left-padded prompts get the same positions as unpadded ones.
    /// </summary>
    public override Tensor forward(Tensor inputIds, ModelCache? cache, Tensor? attentionMask)
    {
        if (_embedTokens is null || _norm is null)
            throw SliceOnly("the whole forward");
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], t = inputIds.shape[1];
        long past = cache?.SeenTokens ?? 0;
        if (inputIds.numel() > 0 && (inputIds.min().item<long>() < 0 || inputIds.max().item<long>() >= _vocabSize))
            throw new ArgumentException($"token ids must be in [0, {_vocabSize}); got [{inputIds.min().item<long>()}, {inputIds.max().item<long>()}]");
        Tensor positions;
        Tensor? keyPadding = null;
        if (attentionMask is not null)
        {
            if (attentionMask.shape.Length != 2 || attentionMask.shape[0] != b || attentionMask.shape[1] != past + t)
                throw new ArgumentException(
                    $"attention mask has shape [{string.Join(", ", attentionMask.shape)}], expected [{b}, {past + t}]");
            var m = attentionMask.to(ScalarType.Int64);
            positions = m.cumsum(1).Minus(1).ClampMin(0).narrow(1, past, t);
            if (m.min().item<long>() == 0)
                keyPadding = m.to(ScalarType.Bool);
        }
        else
        {
            positions = TorchArithmetic.Arange(past, past + t, ScalarType.Int64, inputIds.device).unsqueeze(0).expand(b, t);
        }

        var h = _embedTokens.forward(inputIds);
        var (cos, sin) = _rope.Get(positions, h.dtype);
        var ctx = new AttentionContext(positions, cos, sin, past, keyPadding, cache);
        bool checkpoint = CheckpointActivations && cache is null && is_grad_enabled();
        foreach (var layer in _layers)
            h = checkpoint ? LayerCheckpoint.Apply(layer, h, ctx) : layer.forward(h, ctx);
        cache?.Advance(t);
        return _norm.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs layers <c>[from, to)</c> on hidden states <c>[B, T, C]</c> at positions 0…T−1 without a cache or padding —
    /// what block-wise attention transfer trains on (the residual stream at a block boundary, read from disk).
    /// Returns the hidden states after layer <c>to − 1</c>, before the final norm.
    /// </summary>
    public Tensor ForwardLayers(Tensor hidden, int from, int to)
    {
        if (from < _firstLayer || to > _firstLayer + _layers.Length || from >= to)
            throw new ArgumentOutOfRangeException(nameof(from), $"layers [{from}, {to}) of [{_firstLayer}, {_firstLayer + _layers.Length})");
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], t = hidden.shape[1];
        var positions = TorchArithmetic.Arange(t, ScalarType.Int64, hidden.device).unsqueeze(0).expand(b, t);

        var (cos, sin) = _rope.Get(positions, hidden.dtype);
        var ctx = new AttentionContext(positions, cos, sin, 0, null, null);
        var h = hidden;
        for (int i = from; i < to; i++)
            h = _layers[i - _firstLayer].forward(h, ctx);
        return h.MoveToOuterDisposeScope();
    }

    private InvalidOperationException SliceOnly(string what) =>
        new($"{what}: this model holds only layers [{_firstLayer}, {_firstLayer + _layers.Length})");

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _rope.Dispose();
        base.Dispose(disposing);
    }
}
