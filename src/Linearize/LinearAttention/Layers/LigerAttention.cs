using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// Liger attention (Lan et al., ICML 2025, §3; METHODS §1.2): the teacher's own q/k/v/o projections, no new
/// parameters. The gate of a gated recurrent branch is built from the raw key projection (after LoRA, before RoPE);
/// a sliding-window softmax branch with the teacher's RoPE runs beside it; <c>o = α·window + β·recurrent</c>, then
/// <c>o_proj</c>. The recurrent math runs in float32. Decoding keeps the recurrent state and the window's key/value
/// ring buffer — unlike the reference code, whose window branch has no cache and collapses to <c>y_t = v_t</c>
/// when decoding — so token-by-token decoding equals the full forward pass.
/// </summary>
public sealed class LigerAttention : ProjectedMixer
{
    private const double DenominatorEps = 1e-6;
    private readonly LigerOptions _options;
    private readonly int _slots;

    public LigerAttention(LlamaConfig config, int layerIndex, LigerOptions options)
        : base(nameof(LigerAttention), config, layerIndex)
    {
        options.Validate(config.HeadDim);
        _options = options;
        _slots = options.Slots ?? config.HeadDim;
        RegisterComponents();
    }

    public LigerOptions Options => _options;

    public override string Describe()
    {
        string family = "liger-" + _options.Family.ToString().ToLowerInvariant();
        string extra = _options.Family == LigerFamily.Gsa ? $", slots={_slots}" : "";
        return $"{family}(window={_options.Window}, α={_options.Alpha}, β={_options.Beta}, norm={_options.EffectiveNormalizer}{extra}" +
               (_options.NormalizeRecurrent ? ", normalized" : "") + ")";
    }

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, k, v) = Project(x); // [B, T, H, D], [B, T, H_kv, D] x2
        var cache = ctx.Cache?.GetOrCreate(LayerIndex, () => new LinearLayerCache(_options.Window - 1, 0));

        // Window branch: the teacher's softmax attention with RoPE, restricted to the window.
        var window = WindowBranch.Attend(this, Rotate(q, ctx), Rotate(k, ctx), v.transpose(1, 2), ctx, _options.Window, 0, cache?.Window)
            .transpose(1, 2); // [B, T, H, D]

        // Recurrent branch, float32; padded positions neither write (v = 0, slot write 0) nor decay (g = 0).
        var valid = NewTokenValidity(ctx, b, t, x.device).to(ScalarType.Float32).view(b, t, 1, 1);
        var recurrent = Recurrent(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32) * valid, valid, cache);

        var o = window.Times(_options.Alpha).Plus(recurrent.Times(_options.Beta));
        return Output(o, x.dtype).MoveToOuterDisposeScope();
    }

    private Tensor Recurrent(Tensor q, Tensor k, Tensor v, Tensor valid, LinearLayerCache? cache)
    {
        int group = Heads / KvHeads;
        Tensor Repeat(Tensor x) => group == 1 ? x : x.repeat_interleave(group, dim: 2); // repeat_kv: H_kv → H
        double norm = _options.EffectiveNormalizer;
        double scale = _options.RecurrentScale;
        bool step = q.shape[1] == 1 && cache is not null;
        switch (_options.Family)
        {
            case LigerFamily.Gla:
            {
                var g = nn.functional.logsigmoid(k).Over(norm) * valid;
                return Gla(q.softmax(-1), Repeat(k.softmax(-1)), Repeat(v), Repeat(g), scale, cache, step);
            }
            case LigerFamily.Hgrn2:
            {
                // HGRN2 ties the input gate to the forget gate: the "key" written is 1 − α (METHODS §1.3, §3.8).
                var g = nn.functional.logsigmoid(k).Over(norm) * valid;
                return Gla(q.softmax(-1), Repeat(g.exp().OneMinus()), Repeat(v), Repeat(g), scale, cache, step);
            }
            case LigerFamily.Gsa:
            {
                var g = nn.functional.logsigmoid(Pool(k, _slots)).Over(norm) * valid; // [B, T, H_kv, M]
                var s = g.exp().OneMinus();                                          // slot write weight
                return Gsa(q, Repeat(k), Repeat(v), Repeat(s), Repeat(g), scale, cache, step);
            }
            default:
            {
                var pooled = Pool(k, 1).squeeze(-1); // one value per KV head: [B, T, H_kv]
                var g = (_options.Family == LigerFamily.Mamba2
                    ? -nn.functional.softplus(pooled)
                    : nn.functional.logsigmoid(pooled)).Over(norm) * valid.view(valid.shape[0], valid.shape[1], 1);
                var gh = group == 1 ? g : g.repeat_interleave(group, dim: 2);
                return Scalar(q.softmax(-1), Repeat(k.softmax(-1)), Repeat(v), gh, scale, cache, step);
            }
        }
    }

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

    /// <summary>Appends a ones column to v so the kernel also returns the denominator <c>φ(q)·Σ decayed φ(k)</c>.</summary>
    private Tensor WithDenominator(Tensor v) =>
        _options.NormalizeRecurrent ? cat(new[] { v, ones_like(v.narrow(-1, 0, 1)) }, -1) : v;

    private Tensor Normalized(Tensor o)
    {
        if (!_options.NormalizeRecurrent)
            return o;
        long d = o.shape[^1] - 1;
        return o.narrow(-1, 0, d) / o.narrow(-1, d, 1).Plus(DenominatorEps);

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
        v = WithDenominator(v);
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
