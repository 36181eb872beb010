using Linearize.Caching;
using Linearize.Checkpoints.Configuration;
using Linearize.Checkpoints;
using Linearize.Inference;
using Linearize.Inference.Mixers;
using Linearize.Inference.Threading;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// One TorchSharp token mixer with random weights and its decode-engine twin, fed the same rows: the layer decodes
/// with its own <see cref="ModelCache"/>, the engine mixer with one <see cref="DecodeSequence"/>'s state. The layer's
/// <c>o_proj</c> is the identity (<c>H·D = C</c>), so its output is the mixer output the engine writes before
/// <c>o_proj</c>, head by head. The engine mixer gets what the engine's fused product would give it: the layer's own
/// q/k/v projections of the row (and the delta rule's <c>b_proj</c>, the learned gate's <c>g_proj</c> logits) and the layer's RoPE tables.
/// </summary>
internal sealed unsafe class MixerPair : IDisposable
{
    public const int Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16;

    /// <summary>Keys a window holds: small, so 70 steps wrap every ring many times.</summary>
    public const int Window = 8;

    /// <summary>Every engine mixer family, by the method name that builds it (teacher softmax, with and without Mistral's
    /// window, and each of <see cref="LinearizationConfig.Methods"/>; LoLCATs also with the T2R map).</summary>
    public static readonly string[] Methods =
    {
        "softmax", "softmax-window", "swa", "liger-gla", "liger-hgrn2", "liger-gsa", "liger-mamba2", "liger-mlstm",
        "liger-retention", "liger-gdn", "liger-deltanet", "lolcats-sw", "lolcats-tk", "lolcats-sw-t2r", "lolcats-sw-sparse",
        "liger-gla-sparse", "liger-mamba2-sparse", "liger-gdn-sparse",
        "liger-gla-learned", "liger-mamba2-learned", "liger-retention-learned", "liger-gdn-learned", "liger-gla-rmsnorm",
        "liger-mlstm-rmsnorm", "liger-hgrn2-rmsnorm", "liger-gla-learned-rmsnorm", "liger-retention-sparse-rmsnorm",
        "liger-gla-sparse-learned", "liger-mamba2-sparse-learned", "liger-gdn-sparse-learned",
    };

    /// <summary>Variant suffixes of the Liger cases: the sparse cache, the learned gate (docs/METHODS.md §1.8) and the
    /// RMSNorm read-out (§1.9), in this order after the method name.</summary>
    private static readonly string[] Variants = { "-rmsnorm", "-learned", "-sparse" };

    /// <summary>Sparse-cache slots per KV head of the <c>-sparse</c> cases (docs/METHODS.md §1.7): few, so 70 steps
    /// fill them and then replace pairs many times.</summary>
    public const int SparseSlots = 3;

    public static IEnumerable<object[]> Cases() => Methods.Select(m => new object[] { m });

    private readonly TokenMixer _layer;
    private readonly EngineMixer _mixer;
    private readonly RotaryEmbedding _rope;
    private readonly WorkerPool _pool = new(2);
    private readonly StepContext _ctx;
    private readonly ModelCache _cache = new(1);
    private readonly nn.Module<Tensor, Tensor> _q, _k, _v;
    private readonly List<(Tensor Weight, Tensor? Bias)> _extras = new(); // b_proj [H, C] (delta rule), g_proj [H, C] + bias (learned gate)
    private DecodeSequence _sequence;

    private MixerPair(string method, TokenMixer layer, EngineMixer mixer, LlamaConfig config)
    {
        Method = method;
        _layer = layer;
        _mixer = mixer;
        _rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
        var host = (IProjectionHost)layer;
        (_q, _k, _v) = (host.GetProjection("q_proj"), host.GetProjection("k_proj"), host.GetProjection("v_proj"));
        var weights = layer.state_dict();
        if (weights.TryGetValue("b_proj.weight", out var beta))
            _extras.Add((beta, null));
        if (weights.TryGetValue("g_proj.weight", out var gate))
            _extras.Add((gate, weights["g_proj.bias"]));
        _ctx = new StepContext(Heads, KvHeads, HeadDim, _pool, _extras.Count * Heads);
        _sequence = NewSequence();
    }

    public string Method { get; }

    /// <summary>Tokens both sides have seen.</summary>
    public long Seen => _cache.SeenTokens;

    /// <summary>The one place a test mixer is built: the TorchSharp layer for <paramref name="method"/> (seeded random
    /// weights, std 0.2; LoLCATs feature maps and window factors random too, as after attention transfer), then its
    /// engine twin as <see cref="MixerRegistry"/> builds it for the engine.</summary>
    public static MixerPair Create(string method, ulong seed = 5)
    {
        var json = TinyModels.BaseJson(layers: 1, hidden: Hidden, heads: Heads, kvHeads: KvHeads);
        if (method == "softmax-window")
        {
            json["model_type"] = "mistral";
            json["sliding_window"] = 5;
        }

        var config = LlamaConfig.FromJson(json, $"mixer test {method}");
        TokenMixer layer = method switch
        {
            "softmax" or "softmax-window" => new LlamaAttention(config, 0),
            "swa" => new SlidingWindowAttention(config, 0, Window, sinks: 2),
            "lolcats-sw" or "lolcats-tk" or "lolcats-sw-t2r" or "lolcats-sw-sparse" => new LolcatsAttention(config, 0, new LolcatsOptions
            {
                Shape = method == "lolcats-tk" ? LolcatsWindowShape.Tk : LolcatsWindowShape.Sw,
                Window = Window,
                FeatureMap = method.EndsWith("-t2r", StringComparison.Ordinal) ? LolcatsFeatureMapKind.T2r : LolcatsFeatureMapKind.Hedgehog,
                QueryBlock = 16,
                SparseCache = method.EndsWith("-sparse", StringComparison.Ordinal) ? SparseSlots : 0,
            }),
            _ => new LigerAttention(config, 0, LigerCase(method)),
        };
        layer.eval();
        RandomWeights.Initialize(layer, seed, std: 0.2);
        using (no_grad())
        {
            var output = (TorchSharp.Modules.Linear)((IProjectionHost)layer).GetProjection("o_proj");
            output.weight!.copy_(eye(Hidden, Heads * HeadDim));
        }

        // The engine's choice for this layer, as DecodeEngine gets it.
        var mixer = MixerRegistry.CreateEngineMixer(layer, config);
        return new MixerPair(method, layer, mixer, config);
    }

    /// <summary>A Liger case's options: the method, then any of <see cref="Variants"/>.</summary>
    private static LigerOptions LigerCase(string method)
    {
        string name = method;
        var found = new HashSet<string>();
        foreach (var suffix in Variants)
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                found.Add(suffix);
                name = name[..^suffix.Length];
            }

        return new LigerOptions
        {
            Family = LinearizationMethods.Get(name, "test").Family!.Value,
            Window = Window,
            SparseCache = found.Contains("-sparse") ? SparseSlots : 0,
            Gate = found.Contains("-learned") ? LigerGate.Learned : LigerGate.Keys,
            OutputNorm = found.Contains("-rmsnorm") ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
        };
    }

    private DecodeSequence NewSequence() => new(new[] { _mixer.CreateState() }, null!);

    /// <summary>Random hidden rows <c>[1, T, C]</c>, N(0, 1).</summary>
    public static Tensor Rows(int t, ulong seed)
    {
        using var g = new torch.Generator(seed);
        return randn(new long[] { 1, t, Hidden }, generator: g);
    }

    /// <summary>The TorchSharp layer over rows <paramref name="x"/> <c>[1, T, C]</c> at the next positions, with its
    /// cache; returns <c>[T, H·D]</c>.</summary>
    public float[] Torch(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long t = x.shape[1], past = _cache.SeenTokens;
        var positions = TorchArithmetic.Arange(past, past + t, ScalarType.Int64).unsqueeze(0);
        var (cos, sin) = _rope.Get(positions, ScalarType.Float32);
        var y = _layer.forward(x, new AttentionContext(positions, cos, sin, past, null, _cache));
        _cache.Advance(t);
        return y.contiguous().data<float>().ToArray();
    }

    /// <summary>The engine mixer over rows <paramref name="x"/> <c>[1, T, C]</c>: one step when T = 1 and
    /// <paramref name="prefill"/> is false, else a prefill in blocks of <paramref name="block"/> rows (one segment each,
    /// as <c>DecodeEngine.Prefill</c> cuts a prompt). Returns <c>[T, H·D]</c>.</summary>
    public float[] Engine(Tensor x, bool prefill = false, int block = 20)
    {
        int t = (int)x.shape[1];
        if (!prefill && t != 1)
            throw new ArgumentException("a step takes one row");
        var result = new float[t * Heads * HeadDim];
        for (int offset = 0; offset < t; offset += block)
        {
            int n = Math.Min(block, t - offset);
            LoadRows(x.narrow(1, offset, n));
            _ctx.Prefill = prefill;
            if (prefill)
            {
                _ctx.EnsureSegments(1, n);
                _ctx.SegmentCount = 1;
                _ctx.SegmentStart[0] = 0;
                _ctx.SegmentLength[0] = n;
                for (int i = 0; i < n; i++)
                    _ctx.RowSegment[i] = 0;
                _mixer.Prefill(_ctx);
            }
            else
            {
                _mixer.Step(_ctx);
            }

            new ReadOnlySpan<float>(_ctx.Output(0), n * Heads * HeadDim).CopyTo(result.AsSpan(offset * Heads * HeadDim));
            _sequence.Position += n;
            _ctx.Prefill = false;
        }

        return result;
    }

    /// <summary>Fills the step context with rows <paramref name="x"/> <c>[1, n, C]</c> of the one sequence: the raw
    /// projections (and β logits) and RoPE tables at each row's position.</summary>
    private void LoadRows(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int n = (int)x.shape[1];
        long position = _sequence.Position;
        _ctx.EnsureBatch(n);
        _ctx.Count = n;
        _ctx.Layer = 0;
        _ctx.Sequences = Enumerable.Repeat(_sequence, n).ToArray();
        var parts = new List<Tensor> { _q.forward(x), _k.forward(x), _v.forward(x) };
        foreach (var (weight, bias) in _extras)
            parts.Add(nn.functional.linear(x, weight, bias));
        var qkv = cat(parts.ToArray(), -1).contiguous().data<float>().ToArray(); // [n, QkvStride]
        var positions = TorchArithmetic.Arange(position, position + n, ScalarType.Int64).unsqueeze(0);
        var (cos, sin) = _rope.Get(positions, ScalarType.Float32);
        var cs = cos.contiguous().data<float>().ToArray(); // [1, 1, n, D]: cat(freqs, freqs), the engine keeps one half
        var sn = sin.contiguous().data<float>().ToArray();
        for (int b = 0; b < n; b++)
        {
            qkv.AsSpan(b * _ctx.QkvStride, _ctx.QkvStride).CopyTo(new Span<float>(_ctx.Q(b), _ctx.QkvStride));
            cs.AsSpan(b * HeadDim, HeadDim / 2).CopyTo(new Span<float>(_ctx.Cos(b), HeadDim / 2));
            sn.AsSpan(b * HeadDim, HeadDim / 2).CopyTo(new Span<float>(_ctx.Sin(b), HeadDim / 2));
        }
    }

    /// <summary>Replaces the engine's state with the layer cache, through the mixer's hand-over (<see cref="EngineMixer.Import"/>).</summary>
    public void ImportTorchCache()
    {
        _sequence.Dispose();
        _sequence = NewSequence();
        _mixer.Import(_sequence.Layers[0], _cache[0], 0, _cache.SeenTokens);
        _sequence.Position = _cache.SeenTokens;
    }

    /// <summary>The engine's state against the layer cache, part by part (<see cref="MixerStateParts"/>).</summary>
    public IReadOnlyList<(string Part, float[] Expected, float[] Actual)> States() =>
        MixerStateParts.Pairs(_cache[0], _sequence.Layers[0], Seen);

    public void Dispose()
    {
        _sequence.Dispose();
        _cache.Dispose();
        _ctx.Dispose();
        _pool.Dispose();
        _rope.Dispose();
        _layer.Dispose();
    }
}
