using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// LoLCATs attention (Zhang et al., ICLR 2025; reference <c>linear_window_attention_{sw,tk}.py</c>, docs/METHODS.md §2.2–2.4):
/// the teacher's q/k/v/o under their HF names, RoPE on q and k, <c>repeat_kv</c>, then learnable feature maps
/// (untied for q and k, <c>feature_map_q</c> / <c>feature_map_k</c>) and a per-head window factor
/// <c>γ = σ(window_factors)</c> <c>[1, H, 1, 1]</c>: softmax over the window plus linear attention over every older key,
/// one shared normalizer (<see cref="HybridWindowLinear"/>). Linear in T; decoding keeps a fixed
/// <see cref="LolcatsLayerCache"/> and equals the forward pass for both window shapes (the reference's cache decodes
/// a terrace-trained model with a 64-key sliding window; this one keeps 2w keys and decodes the terrace exactly).
/// With a sparse cache (LoLA, docs/METHODS.md §1.7; sliding window only) up to N evicted pairs per KV head join the
/// window's softmax and stay out of the linear state while cached (<see cref="SparseHybridWindowLinear"/>).
/// </summary>
public sealed class LolcatsAttention : ProjectedMixer, ITransferLayer
{
    [ComponentName(Name = "feature_map_q")]
    private readonly LolcatsFeatureMap _featureMapQ;
    [ComponentName(Name = "feature_map_k")]
    private readonly LolcatsFeatureMap _featureMapK;
    [ComponentName(Name = "window_factors")]
    private readonly Parameter _windowFactors;
    private readonly LolcatsOptions _options;
    private readonly int _teacherWindow;

    public LolcatsAttention(LlamaConfig config, int layerIndex, LolcatsOptions options)
        : base(nameof(LolcatsAttention), config, layerIndex)
    {
        options.Validate(config.HeadDim);
        _options = options;
        _featureMapQ = new LolcatsFeatureMap(Heads, HeadDim, options);
        _featureMapK = new LolcatsFeatureMap(Heads, HeadDim, options); // a copy of the q map at init (reference: deepcopy)
        _windowFactors = new Parameter(TorchArithmetic.Full(new long[] { 1, Heads, 1, 1 }, options.InitWindowFactor, ScalarType.Float32));
        _teacherWindow = config.SlidingWindow ?? 0;
        RegisterComponents();
    }

    public LolcatsOptions Options => _options;

    public LolcatsFeatureMap FeatureMapQ => _featureMapQ;

    public LolcatsFeatureMap FeatureMapK => _featureMapK;

    /// <summary>Logits of γ, <c>[1, H, 1, 1]</c>.</summary>
    public Parameter WindowFactors => _windowFactors;

    /// <summary>The parameters LoLCATs adds (what attention transfer trains).</summary>
    public IEnumerable<Parameter> TransferParameters =>
        _featureMapQ.parameters().Concat(_featureMapK.parameters()).Append(_windowFactors);

    /// <summary>While set, the layer records attention-transfer losses and outputs the teacher's attention.</summary>
    public AttentionTransferRecorder? Transfer { get; set; }

    public override string Describe()
    {
        string shape = _options.Shape.ToString().ToLowerInvariant();
        string map = _options.FeatureMap == LolcatsFeatureMapKind.Hedgehog ? "hedgehog" : "t2r";
        return $"lolcats-{shape}(window={_options.Window}, {map} d'={_options.EffectiveFeatureDim(HeadDim)}" +
               (_options.AffineAttentionFactors ? ", λ=1−γ" : "") + (_options.SparseCache > 0 ? $", sparse={_options.SparseCache}" : "") + ")";
    }

    /// <summary>γ and λ per head, <c>[H]</c>.</summary>
    public (Tensor Gamma, Tensor Lambda) Factors()
    {
        var gamma = _windowFactors.to(ScalarType.Float32).sigmoid().view(Heads);
        return (gamma, _options.AffineAttentionFactors ? gamma.OneMinus() : ones_like(gamma));
    }

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, k, v) = Project(x);
        var qr = Rotate(q, ctx);           // [B, H, T, D]
        var kr = Rotate(k, ctx);           // [B, H_kv, T, D]
        var vt = v.transpose(1, 2);        // [B, H_kv, T, D]
        var valid = NewTokenValidity(ctx, b, t, x.device);
        var positions = ctx.PositionIds;
        var (gamma, lambda) = Factors();
        if (Transfer is { } passThrough && !passThrough.Records(LayerIndex))
        {
            // Block-wise transfer, a layer outside the trained block: only the teacher's output is needed.
            var kvh = RepeatKv(kr);
            return Output(TeacherSoftmax.Compute(qr, kvh, RepeatKv(vt), ctx, _teacherWindow).Output.transpose(1, 2), x.dtype).MoveToOuterDisposeScope();
        }

        var cache = ctx.Cache?.GetOrCreate(LayerIndex, () => new LolcatsLayerCache(_options.Lag, _options.SparseCache));
        Tensor keys = kr, values = vt, keyPositions = positions, keyValid = valid;
        if (cache?.Context() is { } context)
        {
            keys = cat(new[] { context.Keys.to(kr.dtype), kr }, 2);
            values = cat(new[] { context.Values.to(vt.dtype), vt }, 2);
            keyPositions = cat(new[] { context.Positions, positions }, 1);
            keyValid = cat(new[] { context.Valid, valid }, 1);
        }

        var kh = RepeatKv(keys);
        var vh = RepeatKv(values);
        var fq = _featureMapQ.forward(qr);
        var fk = _featureMapK.forward(kh);
        Tensor y;
        if (_options.SparseCache > 0)
        {
            y = WithSparseCache(qr, fq, keys, values, keyPositions, keyValid, gamma, lambda, cache, t);
        }
        else
        {
            y = HybridWindowLinear.Forward(qr, kh, vh, fq, fk, keyPositions, keyValid, gamma, lambda, cache?.State,
                _options.Window, _options.Shape, _options.QueryBlock); // [B, H, T, D] float32
            if (cache is not null)
                Fold(cache, keys, values, keyPositions, keyValid, fk, vh);
        }

        if (Transfer is { } transfer)
        {
            if (cache is not null)
                throw new LinearizeException($"layer {LayerIndex}: attention transfer runs without a decoding cache");
            y = TransferLoss(transfer, qr, kr, vt, kh, vh, fq, fk, positions, valid, gamma, lambda, y, ctx);
        }

        return Output(y.transpose(1, 2), x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The hybrid with LoLA's sparse cache (docs/METHODS.md §1.7). <paramref name="keys"/>, <paramref name="values"/>
    /// <c>[B, H_kv, E, D]</c> are the cached window then the T new tokens (post-RoPE keys), with positions and validity
    /// <c>[B, E]</c>. The pool is the N slots then the E entries; the offers of the call are replayed on the CPU
    /// (<see cref="LolcatsSparseRule.Simulate"/>: scores against the linear state as it is at each offer, losers folded),
    /// then every query attends its window and the slot members and reads the state before the call plus the pairs folded
    /// before it. Updates the cache (window, slots, state, frontier) when given. Returns <c>[B, H, T, D]</c> float32.
    /// </summary>
    private Tensor WithSparseCache(Tensor qr, Tensor fq, Tensor keys, Tensor values, Tensor positions, Tensor valid, Tensor gamma,
        Tensor lambda, LolcatsLayerCache? cache, long t)
    {
        long b = keys.shape[0], hkv = keys.shape[1], e = keys.shape[2], d = keys.shape[3];
        int n = _options.SparseCache, group = Heads / KvHeads;
        var device = keys.device;
        var sparse = cache?.Sparse;
        var slotKeys = sparse?.Keys ?? zeros(new long[] { b, hkv, n, d }, keys.dtype, device);
        var slotValues = sparse?.Values ?? zeros(new long[] { b, hkv, n, d }, values.dtype, device);
        var slotIndex = sparse?.Index ?? TorchArithmetic.Full(new long[] { b, hkv, n }, -1, ScalarType.Int64).to(device);
        var slotScore = sparse?.Score ?? zeros(new long[] { b, hkv, n }, ScalarType.Float32, device);
        var entryValid = valid.to(ScalarType.Float32).view(b, 1, e, 1);
        var poolKeys = cat(new[] { slotKeys.to(keys.dtype), keys }, 2);                              // [B, H_kv, P, D]
        var poolValues = cat(new[] { slotValues.to(ScalarType.Float32), values.to(ScalarType.Float32) * entryValid }, 2);
        var kh = RepeatKv(poolKeys);
        var fk = _featureMapK.forward(kh);                                                            // [B, H, P, F]
        fk = fk * cat(new[] { ones(new long[] { b, 1, n, 1 }, device: device), entryValid }, 2);   // padding writes nothing
        var state = cache?.State ?? zeros(new long[] { b, Heads, fk.shape[3], d + 1 }, device: device);

        static T[] Host<T>(Tensor x) where T : unmanaged => x.detach().cpu().contiguous().data<T>().ToArray();
        var selection = LolcatsSparseRule.Simulate((int)b, (int)hkv, group, n, _options.Window, (int)(e - t), (int)t,
            Host<long>(slotIndex), Host<float>(slotScore), Host<long>(positions), Host<bool>(valid), Host<float>(fk.to(ScalarType.Float32)),
            Host<float>(poolValues), Host<float>(state.to(ScalarType.Float32)), (int)d);
        long pool = selection.Pool;
        Tensor PerHead(long[] x) => RepeatKv(tensor(x, new long[] { b, hkv, pool }, device: device));
        var y = SparseHybridWindowLinear.Forward(qr, fq, kh, RepeatKv(poolValues), fk, positions, valid, PerHead(selection.Enter),
            PerHead(selection.Exit), PerHead(selection.Fold), gamma, lambda, state, _options.Window, _options.QueryBlock);

        if (cache is not null)
        {
            using var noGrad = no_grad();
            var slotOwner = tensor(selection.SlotPool, new long[] { b, hkv, n }, device: device);
            var gather = slotOwner.ClampMin(0L).unsqueeze(-1).expand(b, hkv, n, d);
            var empty = slotOwner.Lt(0).unsqueeze(-1); // empty slots hold zeros, as the engine's
            cache.Sparse!.Set(poolKeys.gather(2, gather).MaskedFill(empty, 0), cat(new[] { slotValues.to(values.dtype), values }, 2).gather(2, gather).MaskedFill(empty, 0),
                tensor(selection.SlotIndex, new long[] { b, hkv, n }, device: device),
                tensor(selection.SlotScore, new long[] { b, hkv, n }, device: device), zeros(new long[] { b, hkv, 0 }, ScalarType.Float32, device));
            // Every pair that has left the window (up to position last + 1 − w) is folded or cached: the frontier is one later
            // than without a sparse cache.
            var frontier = positions.select(1, e - 1).Plus(2 - _options.Window);
            cache.Set(keys, values, positions, valid, tensor(selection.State, state.shape, device: device), frontier);
        }

        return y;
    }

    private Tensor RepeatKv(Tensor x) => Heads == KvHeads ? x : x.repeat_interleave(Heads / KvHeads, dim: 1);

    /// <summary>Moves every key below the new frontier into the linear state and keeps the last entries as the window.</summary>
    private void Fold(LolcatsLayerCache cache, Tensor keys, Tensor values, Tensor positions, Tensor valid, Tensor fk, Tensor vh)
    {
        using var noGrad = no_grad();
        long b = keys.shape[0], n = keys.shape[2];
        var last = positions.select(1, n - 1);                               // [B]
        int w = _options.Window;
        // The next query (at last + 1) has every key at or below (last + 1) − w in L (sliding window), or every key
        // before the previous block (terrace); keys are folded no earlier than that.
        var frontier = _options.Shape == LolcatsWindowShape.Sw
            ? last.Plus(1 - w)
            : last.FloorDiv(w).Minus(1).Times(w).ClampMin(0);
        var fold = valid.logical_and(positions < frontier.unsqueeze(1)).to(ScalarType.Float32).view(b, 1, n, 1);
        var v1 = cat(new[] { vh.to(ScalarType.Float32), ones_like(vh.narrow(-1, 0, 1), dtype: ScalarType.Float32) }, -1) * fold;
        var added = (fk * fold).transpose(-2, -1).matmul(v1);              // [B, H, F, Dv+1]
        var state = cache.State is null ? added : cache.State.Plus(added);
        cache.Set(keys, values, positions, valid, state, frontier);
    }

    private Tensor TransferLoss(AttentionTransferRecorder transfer, Tensor qr, Tensor kr, Tensor vt, Tensor kh, Tensor vh,
        Tensor fq, Tensor fk, Tensor positions, Tensor valid, Tensor gamma, Tensor lambda, Tensor y, AttentionContext ctx)
    {
        var (teacher, teacherWeights) = TeacherSoftmax.Compute(qr, kh, vh, ctx, _teacherWindow);

        var rowValid = valid.to(ScalarType.Float32).view(valid.shape[0], 1, valid.shape[1], 1);
        long count = Math.Max(1, (long)rowValid.sum().item<float>()) * qr.shape[1] * qr.shape[3];
        var mse = ((y - teacher).Squared() * rowValid).sum().Over(count);
        Tensor? xent = null;
        if (transfer.WithCrossEntropy)
        {
            var (_, weights) = HybridWindowLinearQuadratic.Forward(qr, kh, vh, fq, fk, positions, valid, gamma, lambda,
                _options.Window, _options.Shape);
            var rows = -(teacherWeights * weights.ClampMin(1e-12).log()).sum(-1, keepdim: true) * rowValid;
            xent = rows.sum().Over(Math.Max(1, (long)rowValid.sum().item<float>() * qr.shape[1]));
        }


        transfer.Record(LayerIndex, mse, xent);
        return teacher;
    }
}
