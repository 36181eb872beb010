using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// Grouped-query softmax attention with RoPE and a KV cache (HF <c>LlamaAttention</c>; Qwen2 adds q/k/v bias).
/// <c>[B, T, C] → [B, T, C]</c>; heads are <c>[B, H, T, D]</c> internally and softmax runs in float32.
/// </summary>
public sealed class LlamaAttention : ProjectedMixer
{
    private readonly int? _window;

    public LlamaAttention(LlamaConfig config, int layerIndex) : base(nameof(LlamaAttention), config, layerIndex)
    {
        _window = config.SlidingWindow;
        RegisterComponents();
    }

    /// <summary>Mistral's sliding window (keys a query sees), or null for full causal attention.</summary>
    public int? SlidingWindow => _window;

    public override string Describe() => _window is int w ? $"softmax(window={w})" : "softmax";

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x);
        q = Rotate(q, ctx);
        k = Rotate(k, ctx);
        v = v.transpose(1, 2);
        if (ctx.Cache is not null)
            (k, v) = ctx.Cache.GetOrCreate(LayerIndex, () => new KvCache()).Append(k, v);

        var o = Attend(q, k, v, ctx.PastLength, ctx.KeyPadding, _window);
        return Output(o.transpose(1, 2), x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Causal softmax attention of <paramref name="q"/> <c>[B, H, T, D]</c> over <paramref name="k"/>, <paramref name="v"/>
    /// <c>[B, H_kv, S, D]</c> where the queries sit at positions <c>past..past+T-1</c>. Returns <c>[B, H, T, D]</c>.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, long past, Tensor? keyPadding, int? window)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], heads = q.shape[1], kvHeads = k.shape[1], t = q.shape[2], s = k.shape[2], d = q.shape[3];
        long group = heads / kvHeads;
        bool windowBinds = window is int w && s > w;
        Tensor o;
        if (keyPadding is null && past == 0 && t == s && !windowBinds)
        {
            // Prefill from scratch: plain causal attention, libtorch's fused kernel.
            if (group > 1)
            {
                k = k.repeat_interleave(group, dim: 1);
                v = v.repeat_interleave(group, dim: 1);
            }

            o = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: t > 1);
        }
        else if (keyPadding is null)
        {
            // Decoding / chunked prefill over a cache: fold each KV head's query group into the query rows
            // ([B, H_kv, G·T, D]) instead of copying the whole cache G times per step.
            var grouped = q.reshape(b, kvHeads, group * t, d);
            Tensor? mask = null;
            if (t > 1 || windowBinds)
                mask = AttentionMasks.Causal(past, t, s, null, window, q.device).expand(1, group, t, s).reshape(1, 1, group * t, s);
            o = nn.functional.scaled_dot_product_attention(grouped, k, v, attn_mask: mask).reshape(b, heads, t, d);
        }
        else
        {
            if (group > 1)
            {
                // repeat_kv: each KV head serves heads/kvHeads consecutive query heads.
                k = k.repeat_interleave(group, dim: 1);
                v = v.repeat_interleave(group, dim: 1);
            }

            var allowed = AttentionMasks.Causal(past, t, s, keyPadding, window, q.device);
            var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-2, -1)).Over(Math.Sqrt(d));
            // A fully padded query row would softmax to NaN; the finite minimum keeps it uniform (and it is never read).
            scores = scores.MaskedFill(allowed.logical_not(), float.MinValue);

            o = scores.softmax(-1).to(v.dtype).matmul(v);
        }

        return o.MoveToOuterDisposeScope();
    }
}
