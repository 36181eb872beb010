using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// Liger attention (Lan et al., ICML 2025, §3; docs/METHODS.md §1.2): the teacher's own q/k/v/o projections, no new
/// parameters. The gate of a gated recurrent branch is built from the raw key projection (after LoRA, before RoPE);
/// a sliding-window softmax branch with the teacher's RoPE runs beside it; <c>o = α·window + β·recurrent</c>, then
/// <c>o_proj</c>. The recurrent math runs in float32. Decoding keeps the recurrent state and the window's key/value
/// ring buffer — unlike the reference code, whose window branch has no cache and collapses to <c>y_t = v_t</c>
/// when decoding — so token-by-token decoding equals the full forward pass.
/// </summary>
/// <remarks>
/// The delta-rule families (<c>liger-gdn</c>: Gated DeltaNet, Yang et al. 2025; <c>liger-deltanet</c>: DeltaNet, Yang
/// et al. 2024) add exactly one parameter per layer, <c>b_proj</c> <c>[H, C]</c> without bias (fla's
/// <c>GatedDeltaNet.b_proj</c>): the write strength β = σ(W_β x) per query head and token, which nothing in the teacher
/// can supply. It is initialised to zero, so an untrained conversion writes with β = ½ everywhere (1 with
/// <see cref="LigerOptions.NegativeEigenvalues"/>, where β = 2σ(W_β x), Grazzi et al. 2025) and is deterministic;
/// training moves it. The delta rule needs ‖k‖ = 1 for its transitions to stay contractions, so φ is L2
/// normalization of q and k per head instead of a softmax.
/// <para>With the learned gate (<see cref="LigerGate.Learned"/>, Lizard; docs/METHODS.md §1.8) the layer adds
/// <c>g_proj</c> <c>[H, C]</c> with bias, and the gate is one scalar per query head, <c>log α = logsigmoid(g_proj x)/normalizer</c>,
/// instead of the key-built one. With the RMSNorm read-out (TransNormer; §1.9) each head's recurrent read-out is divided by
/// its root mean square instead of by a denominator. In attention transfer (<see cref="Transfer"/>) the layer trains its
/// added projections against the teacher's softmax attention and passes the teacher's output on.</para>
/// </remarks>
public sealed class LigerAttention : ProjectedMixer, ITransferLayer
{
    private readonly LigerOptions _options;
    private readonly int _slots;
    [ComponentName(Name = "b_proj")]
    private readonly nn.Module<Tensor, Tensor>? _betaProj;
    [ComponentName(Name = "g_proj")]
    private readonly Linear? _gateProj;
    private readonly int _teacherWindow;

    public LigerAttention(LlamaConfig config, int layerIndex, LigerOptions options)
        : base(nameof(LigerAttention), config, layerIndex)
    {
        options.Validate(config.HeadDim);
        _options = options;
        _slots = options.Slots ?? config.HeadDim;
        if (options.IsDeltaRule)
        {
            var betaProj = nn.Linear(config.HiddenSize, Heads, hasBias: false);
            using (no_grad())
                betaProj.weight.zero_(); // β = σ(0) = ½ until trained (see remarks)
            _betaProj = betaProj;
        }

        if (options.HasLearnedGate)
        {
            var gateProj = nn.Linear(config.HiddenSize, Heads, hasBias: true);
            using (no_grad())
            {
                gateProj.weight!.zero_();
                gateProj.bias!.FillWith(options.LearnedGateBias ?? 0.0); // replaced by the pooled keys on conversion when null
            }

            _gateProj = gateProj;
        }

        _teacherWindow = config.SlidingWindow ?? 0;
        RegisterComponents();
    }

    public LigerOptions Options => _options;

    /// <inheritdoc />
    public AttentionTransferRecorder? Transfer { get; set; }

    /// <summary>Name fragments of the parameters a Liger conversion adds (<c>.self_attn.b_proj.</c> for the delta rule,
    /// <c>.self_attn.g_proj.</c> for the learned gate), which LoRA leaves frozen: recovery trains them in full beside the
    /// adapters (<c>--train-modules</c>, the pipeline, the recall lab). Empty for other methods.</summary>
    public static IReadOnlyList<string> AddedParameterFragments(LinearizationConfig linearization)
    {
        if (linearization.Method.Kind != MethodKind.Liger)
            return Array.Empty<string>();
        var fragments = new List<string>();
        if (linearization.Method.IsDeltaRule)
            fragments.Add(BetaProjectionFragment);
        if (linearization.Liger.HasLearnedGate)
            fragments.Add(GateProjectionFragment);
        return fragments;
    }

    /// <summary>The name fragment of the delta rule's β projection.</summary>
    public const string BetaProjectionFragment = ".self_attn.b_proj.";

    /// <summary>The name fragment of the learned gate's projection.</summary>
    public const string GateProjectionFragment = ".self_attn.g_proj.";

    /// <summary>The parameters the layer adds to the teacher: <c>b_proj</c> (delta rule) and <c>g_proj</c> (learned gate).</summary>
    /// <remarks>Their name fragments, for training them in full: <see cref="AddedParameterFragments"/>.</remarks>
    public IEnumerable<Parameter> TransferParameters =>
        (_betaProj?.parameters() ?? Enumerable.Empty<Parameter>()).Concat(_gateProj?.parameters() ?? Enumerable.Empty<Parameter>());

    /// <summary>
    /// The learned gate's start from the keys (docs/METHODS.md §1.8): head h's row of <c>g_proj</c> is the mean of its KV
    /// head's D rows of <paramref name="keyWeight"/> <c>[H_kv·D, C]</c> (and its bias the mean of <paramref name="keyBias"/>'s),
    /// negated for Mamba2, so that <c>logsigmoid(g_proj x)</c> is the key-pooled gate of the scalar families exactly
    /// (Mamba2's <c>−softplus(p) = logsigmoid(−p)</c>) and the per-channel gate's mean argument for GLA. Does nothing when the
    /// layer has no learned gate or its options fix a constant bias.
    /// </summary>
    public void InitializeGateFromKeys(Tensor keyWeight, Tensor? keyBias)
    {
        if (_gateProj is null || _options.LearnedGateBias is not null)
            return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int group = Heads / KvHeads;
        double sign = _options.Family == LigerFamily.Mamba2 ? -1.0 : 1.0;
        var w = keyWeight.to(ScalarType.Float32).view(KvHeads, HeadDim, -1).mean(new long[] { 1 }).repeat_interleave(group, dim: 0).Times(sign);
        _gateProj.weight!.copy_(w);
        if (keyBias is null)
            _gateProj.bias!.zero_();
        else
            _gateProj.bias!.copy_(keyBias.to(ScalarType.Float32).view(KvHeads, HeadDim).mean(new long[] { 1 }).repeat_interleave(group, dim: 0).Times(sign));
    }

    /// <summary><see cref="InitializeGateFromKeys(Tensor, Tensor?)"/> from the layer's own (teacher) <c>k_proj</c>.</summary>
    public void InitializeGateFromKeys()
    {
        var k = (Linear)KProj;
        InitializeGateFromKeys(k.weight!, k.bias);
    }

    public override string Describe()
    {
        string family = LinearizationMethods.Of(_options.Family).Name;
        string extra = _options.Family == LigerFamily.Gsa ? $", slots={_slots}"
            : _options.NegativeEigenvalues ? ", β∈(0,2)" : "";
        return $"{family}(window={_options.Window}, α={_options.Alpha}, β={_options.Beta}, norm={_options.EffectiveNormalizer}{extra}" +
               (_options.HasLearnedGate ? ", learned gate" : "") +
               (_options.NormalizeRecurrent ? ", normalized" : "") +
               (_options.OutputNorm == LigerOutputNorm.RmsNorm ? ", rmsnorm" : "") +
               (_options.SparseCache > 0 ? $", sparse={_options.SparseCache}" : "") + ")";
    }

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, k, v) = Project(x); // [B, T, H, D], [B, T, H_kv, D] x2
        if (Transfer is { } passThrough && !passThrough.Records(LayerIndex))
            return Output(Teacher(q, k, v, ctx).transpose(1, 2), x.dtype).MoveToOuterDisposeScope(); // block-wise: outside the block
        var cache = ctx.Cache?.GetOrCreate(LayerIndex, () => new LinearLayerCache(_options.Window - 1, 0, _options.SparseCache));
        var valid = NewTokenValidity(ctx, b, t, x.device).to(ScalarType.Float32).view(b, t, 1, 1);

        // Window branch: the teacher's softmax attention with RoPE, restricted to the window — and with a sparse cache
        // (docs/METHODS.md §1.7) the evicted pairs kept by recall error, scored against the state before this call writes it.
        var rq = Rotate(q, ctx);
        var rk = Rotate(k, ctx);
        // The delta rule scores its pairs while it runs (against the state before this call writes it), so it goes first;
        // the window branch reads no recurrent state.
        Tensor? deltaErrors = null;
        var recurrent = _options.IsDeltaRule
            ? DeltaRule(x, q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32) * valid, valid, cache, out deltaErrors)
            : null;
        var window = (_options.SparseCache > 0
                ? WindowBranch.AttendWithSparse(this, rq, rk, v.transpose(1, 2), ctx, _options.Window, _options.SparseCache, cache,
                    deltaErrors ?? RecallErrors(x, k.to(ScalarType.Float32), v.to(ScalarType.Float32) * valid, valid, cache?.State))
                : WindowBranch.Attend(this, rq, rk, v.transpose(1, 2), ctx, _options.Window, 0, cache?.Window))
            .transpose(1, 2); // [B, T, H, D]

        // Recurrent branch, float32; padded positions neither write (v = 0, slot write 0) nor decay (g = 0).
        recurrent ??= Recurrent(x, q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32) * valid, valid, cache);

        var o = window.Times(_options.Alpha).Plus(recurrent.Times(_options.Beta));
        if (Transfer is { } transfer)
        {
            if (cache is not null)
                throw new LinearizeException($"layer {LayerIndex}: attention transfer runs without a decoding cache");
            o = TransferLoss(transfer, o, q, k, v, valid, ctx);
        }

        return Output(o, x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>The teacher's softmax attention from the layer's q/k/v, <c>[B, H, T, D]</c> float32, without gradients.</summary>
    private Tensor Teacher(Tensor q, Tensor k, Tensor v, AttentionContext ctx)
    {
        int group = Heads / KvHeads;
        Tensor Repeat(Tensor y) => group == 1 ? y : y.repeat_interleave(group, dim: 1);
        return TeacherSoftmax.Compute(Rotate(q, ctx), Repeat(Rotate(k, ctx)), Repeat(v.transpose(1, 2)), ctx, _teacherWindow).Output;
    }

    /// <summary>Records <c>MSE(o, teacher)</c> over real tokens on the per-head outputs before <c>o_proj</c> and returns the
    /// teacher's output <c>[B, T, H, D]</c> (docs/METHODS.md §2.5, as the LoLCATs layers).</summary>
    private Tensor TransferLoss(AttentionTransferRecorder transfer, Tensor o, Tensor q, Tensor k, Tensor v, Tensor valid, AttentionContext ctx)
    {
        if (transfer.WithCrossEntropy)
            throw new LinearizeException("--xent-factor compares attention rows, which only the LoLCATs layers have; a Liger layer transfers by the MSE alone");
        var teacher = Teacher(q, k, v, ctx).transpose(1, 2); // [B, T, H, D]
        long count = Math.Max(1, (long)valid.sum().item<float>()) * o.shape[2] * o.shape[3];
        var mse = ((o.to(ScalarType.Float32) - teacher).Squared() * valid).sum().Over(count);
        transfer.Record(LayerIndex, mse, null);
        return teacher;
    }

    /// <summary>The learned gate <c>logsigmoid(g_proj x)/normalizer</c> per query head, float32 <c>[B, T, H]</c>.</summary>
    private Tensor LearnedLogGate(Tensor x) =>
        nn.functional.logsigmoid(_gateProj!.forward(x).to(ScalarType.Float32)).Over(_options.EffectiveNormalizer);

    private Tensor Recurrent(Tensor x, Tensor q, Tensor k, Tensor v, Tensor valid, LinearLayerCache? cache)
    {
        int group = Heads / KvHeads;
        Tensor Repeat(Tensor x) => group == 1 ? x : x.repeat_interleave(group, dim: 2); // repeat_kv: H_kv → H
        double norm = _options.EffectiveNormalizer;
        double scale = _options.RecurrentScale;
        bool step = q.shape[1] == 1 && cache is not null;
        switch (_options.Family)
        {
            case LigerFamily.Gla when _options.HasLearnedGate:
            {
                // One learned scalar per query head, the same for every channel (docs/METHODS.md §1.8).
                var g = LearnedLogGate(x).unsqueeze(-1).expand(q.shape[0], q.shape[1], Heads, HeadDim) * valid;
                return Gla(q.softmax(-1), Repeat(k.softmax(-1)), Repeat(WithDenominator(v, valid)), g, scale, cache, step);
            }
            case LigerFamily.Gla:
            {
                var g = nn.functional.logsigmoid(k).Over(norm) * valid;
                return Gla(q.softmax(-1), Repeat(k.softmax(-1)), Repeat(WithDenominator(v, valid)), Repeat(g), scale, cache, step);
            }
            case LigerFamily.Hgrn2:
            {
                // HGRN2 ties the input gate to the forget gate: the "key" written is 1 − α (docs/METHODS.md §1.3, §3.8).
                var g = nn.functional.logsigmoid(k).Over(norm) * valid;
                return Gla(q.softmax(-1), Repeat(g.exp().OneMinus()), Repeat(WithDenominator(v, valid)), Repeat(g), scale, cache, step);
            }
            case LigerFamily.Gsa:
            {
                var g = nn.functional.logsigmoid(Pool(k, _slots)).Over(norm) * valid; // [B, T, H_kv, M]
                var s = g.exp().OneMinus();                                          // slot write weight
                return Gsa(q, Repeat(k), Repeat(v), Repeat(s), Repeat(g), scale, cache, step);
            }
            default:
            {
                var validBt = valid.view(valid.shape[0], valid.shape[1], 1);
                Tensor gh;
                if (_options.HasLearnedGate)
                {
                    gh = LearnedLogGate(x) * validBt; // per query head: [B, T, H]
                }
                else
                {
                    var pooled = Pool(k, 1).squeeze(-1); // one value per KV head: [B, T, H_kv]
                    var g = (_options.Family == LigerFamily.Mamba2
                        ? -nn.functional.softplus(pooled)
                        : nn.functional.logsigmoid(pooled)).Over(norm) * validBt;
                    gh = group == 1 ? g : g.repeat_interleave(group, dim: 2);
                }

                return Scalar(q.softmax(-1), Repeat(k.softmax(-1)), Repeat(WithDenominator(v, valid)), gh, scale, cache, step);
            }
        }
    }

    /// <summary>
    /// The delta-rule branch: q, k L2-normalized per head, <c>log α = logsigmoid(pool(k))/normalizer</c> per KV head
    /// (Gated DeltaNet; none for DeltaNet) as the scalar-gate families build it, β from <c>b_proj</c>. Padded positions
    /// neither write (β = 0) nor decay (log α = 0). Returns <c>[B, T, H, D]</c> float32. With a sparse cache also each new
    /// pair's recall error <paramref name="errors"/> <c>[B, T, H_kv]</c> (docs/METHODS.md §1.7): the state right after the
    /// pair is written, read with its own normalized key, <c>‖v_t − S_tᵀ k̂_t‖²</c>, averaged over the KV head's query heads
    /// (their β differ, so their states do).
    /// </summary>
    private Tensor DeltaRule(Tensor x, Tensor q, Tensor k, Tensor v, Tensor valid, LinearLayerCache? cache, out Tensor? errors)
    {
        long b = q.shape[0], t = q.shape[1];
        int group = Heads / KvHeads;
        Tensor Repeat(Tensor y) => group == 1 ? y : y.repeat_interleave(group, dim: 2); // repeat_kv: H_kv → H
        var validBt = valid.view(b, t, 1);
        Tensor? g = null;
        if (_options.Family == LigerFamily.Gdn && _options.HasLearnedGate)
            g = LearnedLogGate(x) * validBt;
        else if (_options.Family == LigerFamily.Gdn)
            g = Repeat(nn.functional.logsigmoid(Pool(k, 1).squeeze(-1)).Over(_options.EffectiveNormalizer) * validBt);
        var beta = _betaProj!.call(x).to(ScalarType.Float32).sigmoid();        // [B, T, H]
        if (_options.NegativeEigenvalues)
            beta = beta.Times(2);
        beta = beta * validBt;
        var qn = L2Normalize(q);
        var kn = Repeat(L2Normalize(k));
        v = Repeat(v);
        double scale = _options.RecurrentScale;

        errors = null;
        if (_options.SparseCache > 0)
        {
            // One more run of the same recurrence with the written keys as queries: o_t = S_tᵀ k̂_t.
            var recalled = q.shape[1] == 1 && cache?.State is not null
                ? DeltaRuleRecurrent.Step(kn.select(1, 0), kn.select(1, 0), v.select(1, 0), beta.select(1, 0), g?.select(1, 0), cache.State, 1.0)
                    .Output.unsqueeze(1)
                : DeltaRuleChunked.Forward(kn, kn, v, beta, g, 1.0, cache?.State, _options.ChunkSize).Output; // [B, T, H, D]
            errors = (v - recalled).Squared().sum(-1).view(b, t, KvHeads, group).sum(-1).Over(group);
        }

        Tensor o, state;
        if (q.shape[1] == 1 && cache is not null)
        {
            var s0 = cache.State ?? zeros(b, Heads, HeadDim, v.shape[3], device: q.device);
            (o, state) = DeltaRuleRecurrent.Step(qn.select(1, 0), kn.select(1, 0), v.select(1, 0), beta.select(1, 0),
                g?.select(1, 0), s0, scale);
            o = o.unsqueeze(1);
        }
        else
        {
            (o, state) = DeltaRuleChunked.Forward(qn, kn, v, beta, g, scale, cache?.State, _options.ChunkSize);
        }

        cache?.SetState(state);
        return o;
    }

    private static Tensor L2Normalize(Tensor x) => x * x.Squared().sum(-1, keepdim: true).Plus(LinearAttentionConstants.L2NormEps).rsqrt();

    /// <summary>
    /// Liger's parameter-free <c>AdaptiveAvgPool1d(size · H_kv)</c> over the flattened key projection
    /// <c>[B, T, H_kv·D]</c>, reshaped to <c>[B, T, H_kv, size]</c>. The identity when <c>size = D</c>.
    /// </summary>
    private Tensor Pool(Tensor k, int size)
    {
        long b = k.shape[0], t = k.shape[1];
        if (size == HeadDim)
            return k;
        var flat = k.reshape(b * t, 1, KvHeads * HeadDim);
        return nn.functional.adaptive_avg_pool1d(flat, size * KvHeads).view(b, t, KvHeads, size);
    }

    /// <summary>Appends the validity column to v (1 for a real token, 0 for padding, which writes nothing) so the state
    /// also carries the key sum <c>z = Σ decayed φ(k)</c> and the kernel returns <c>φ(q)·z</c> (<see cref="LigerOptions.CarriesKeySum"/>).
    /// <paramref name="v"/> <c>[B, T, H_kv, D]</c>, <paramref name="valid"/> <c>[B, T, 1, 1]</c>.</summary>
    private Tensor WithDenominator(Tensor v, Tensor valid) =>
        _options.CarriesKeySum ? cat(new[] { v, valid.expand(v.shape[0], v.shape[1], v.shape[2], 1) }, -1) : v;

    /// <summary>Divides by the denominator column when normalizing; otherwise drops the key-sum column if carried; then the
    /// RMSNorm read-out when chosen (docs/METHODS.md §1.9).</summary>
    private Tensor Normalized(Tensor o)
    {
        if (_options.OutputNorm == LigerOutputNorm.RmsNorm)
        {
            var read = _options.CarriesKeySum ? o.narrow(-1, 0, o.shape[^1] - 1) : o;
            return read * read.Squared().mean(new long[] { -1 }, keepdim: true).Plus(LinearAttentionConstants.OutputNormEps).rsqrt();
        }

        if (!_options.CarriesKeySum)
            return o;
        long d = o.shape[^1] - 1;
        return _options.NormalizeRecurrent
            ? o.narrow(-1, 0, d) / o.narrow(-1, d, 1).Plus(LinearAttentionConstants.DenominatorEps)
            : o.narrow(-1, 0, d);
    }

    /// <summary>
    /// LoLA's recall error of each new pair (docs/METHODS.md §1.7), per KV head: the state right after the pair is
    /// written, read with the pair's own written key as the query and normalized by the key sum,
    /// <c>e_t = ‖v_t − φ(k_t)·S_t / (φ(k_t)·z_t + ε)‖²</c>. A KV head's state is any of its query heads' (they all write
    /// the same keys, values and gates), so the first head of each group stands for it. With the learned gate the query
    /// heads of a group decay differently, so every query head's state is read and the KV head's error is the mean over
    /// its group (as the delta rule's). <paramref name="x"/> the layer input (the learned gate's), <paramref name="k"/>,
    /// <paramref name="v"/> <c>[B, T, H_kv, D]</c> float32 (v already zero at padding), <paramref name="valid"/>
    /// <c>[B, T, 1, 1]</c>, <paramref name="state"/> the cached state before this call. Returns <c>[B, T, H_kv]</c>.
    /// </summary>
    private Tensor RecallErrors(Tensor x, Tensor k, Tensor v, Tensor valid, Tensor? state)
    {
        long b = k.shape[0], t = k.shape[1], d = v.shape[3];
        int group = Heads / KvHeads;
        double norm = _options.EffectiveNormalizer;
        var vz = WithDenominator(v, valid);
        var validBt = valid.view(b, t, 1);
        if (_options.HasLearnedGate)
        {
            // Every query head's own state (keys and values repeated over the group), then the group's mean.
            Tensor Repeat(Tensor y) => group == 1 ? y : y.repeat_interleave(group, dim: 2);
            var gh = LearnedLogGate(x) * validBt; // [B, T, H]
            bool perChannel = _options.Family == LigerFamily.Gla;
            var recalledByHead = RecallWritten(Repeat(k.softmax(-1)), Repeat(vz), perChannel ? gh.unsqueeze(-1).expand(b, t, Heads, HeadDim) : gh,
                state, perChannel, d);
            return (Repeat(v) - recalledByHead).Squared().sum(-1).view(b, t, KvHeads, group).sum(-1).Over(group);
        }

        var h0 = state?.index_select(1, TorchArithmetic.Arange(0, Heads, group, ScalarType.Int64, k.device));
        Tensor recalled;
        if (_options.Family is LigerFamily.Gla or LigerFamily.Hgrn2)
        {
            var g = nn.functional.logsigmoid(k).Over(norm) * valid;
            var key = _options.Family == LigerFamily.Gla ? k.softmax(-1) : g.exp().OneMinus();
            recalled = RecallWritten(key, vz, g, h0, perChannel: true, d);
        }
        else
        {
            var pooled = Pool(k, 1).squeeze(-1);
            var g = (_options.Family == LigerFamily.Mamba2
                ? -nn.functional.softplus(pooled)
                : nn.functional.logsigmoid(pooled)).Over(norm) * validBt;
            recalled = RecallWritten(k.softmax(-1), vz, g, h0, perChannel: false, d);
        }

        return (v - recalled).Squared().sum(-1);
    }

    /// <summary>Each pair read back from the state that includes it, with its written <paramref name="key"/> as the
    /// query, normalized by the key sum: <c>[B, T, heads, D]</c>. <paramref name="values"/> carry the key-sum column
    /// (<see cref="WithDenominator"/>); <paramref name="g"/> is per channel (GLA's kernel) or per head (the scalar
    /// gate's); <paramref name="h0"/> the state before this call (one step from it when T = 1).</summary>
    private Tensor RecallWritten(Tensor key, Tensor values, Tensor g, Tensor? h0, bool perChannel, long d)
    {
        bool step = key.shape[1] == 1 && h0 is not null;
        var o = perChannel
            ? step
                ? GlaRecurrent.Step(key.select(1, 0), key.select(1, 0), values.select(1, 0), g.select(1, 0), h0!, 1.0).Output.unsqueeze(1)
                : GlaChunked.Forward(key, key, values, g, 1.0, h0, _options.ChunkSize, _options.SubChunkSize).Output
            : step
                ? ScalarGateRecurrent.Step(key.select(1, 0), key.select(1, 0), values.select(1, 0), g.select(1, 0), h0!, 1.0).Output.unsqueeze(1)
                : ScalarGateChunked.Forward(key, key, values, g, 1.0, h0, _options.ChunkSize).Output;
        return o.narrow(-1, 0, d) / o.narrow(-1, d, 1).Plus(LinearAttentionConstants.DenominatorEps);
    }

    private delegate (Tensor Output, Tensor State) StepKernel(Tensor q, Tensor k, Tensor v, Tensor g, Tensor state, double scale);

    private delegate (Tensor Output, Tensor State) ChunkKernel(Tensor q, Tensor k, Tensor v, Tensor g, double scale, Tensor? state);

    private Tensor Gla(Tensor q, Tensor k, Tensor v, Tensor g, double scale, LinearLayerCache? cache, bool step) =>
        RunRecurrence(q, k, v, g, scale, cache, step, GlaRecurrent.Step,
            (q, k, v, g, s, h0) => GlaChunked.Forward(q, k, v, g, s, h0, _options.ChunkSize, _options.SubChunkSize));

    private Tensor Scalar(Tensor q, Tensor k, Tensor v, Tensor g, double scale, LinearLayerCache? cache, bool step) =>
        RunRecurrence(q, k, v, g, scale, cache, step, ScalarGateRecurrent.Step,
            (q, k, v, g, s, h0) => ScalarGateChunked.Forward(q, k, v, g, s, h0, _options.ChunkSize));

    /// <summary>One decoding step from the cached state, or the chunked kernel over T tokens; updates the cache.</summary>
    private Tensor RunRecurrence(Tensor q, Tensor k, Tensor v, Tensor g, double scale, LinearLayerCache? cache, bool step,
        StepKernel stepKernel, ChunkKernel chunkKernel)
    {
        Tensor o, state;
        if (step)
        {
            var s0 = cache!.State ?? zeros(q.shape[0], q.shape[2], k.shape[3], v.shape[3], device: q.device);
            (o, state) = stepKernel(q.select(1, 0), k.select(1, 0), v.select(1, 0), g.select(1, 0), s0, scale);
            o = o.unsqueeze(1);
        }
        else
        {
            (o, state) = chunkKernel(q, k, v, g, scale, cache?.State);
        }

        cache?.SetState(state);
        return Normalized(o);
    }

    private Tensor Gsa(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, double scale, LinearLayerCache? cache, bool step)
    {
        Tensor o, hk, hv;
        if (step)
        {
            long b = q.shape[0], h = q.shape[2], dk = q.shape[3], m = s.shape[3], dv = v.shape[3];
            var hk0 = cache!.State ?? zeros(b, h, dk, m, device: q.device);
            var hv0 = cache.SlotValueState ?? zeros(b, h, m, dv, device: q.device);
            (o, hk, hv) = GsaRecurrent.Step(q.select(1, 0), k.select(1, 0), v.select(1, 0), s.select(1, 0), g.select(1, 0), hk0, hv0, scale);
            o = o.unsqueeze(1);
        }
        else
        {
            (o, hk, hv) = GsaChunked.Forward(q, k, v, s, g, scale, cache?.State, cache?.SlotValueState,
                _options.ChunkSize, _options.SubChunkSize);
        }

        cache?.SetState(hk, hv);
        return o; // the slot softmax already normalizes GSA's read-out
    }
}
