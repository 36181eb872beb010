using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Inference.Kernels;
using Linearize.Inference.Mixers;
using Linearize.Inference.Threading;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>
/// A CPU decoding engine beside the TorchSharp model: the same network, one token per sequence per step, with every
/// weight packed once (<see cref="WeightFormat"/>) and streamed once per step by vectorized kernels split across a
/// <see cref="WorkerPool"/>. A step is embed → per layer (RMSNorm, fused q/k/v, mixer, o_proj, residual, RMSNorm,
/// fused gate/up, SwiGLU, down, residual) → norm → head. The TorchSharp model stays the training and prefill path and
/// this engine's reference: prefill there, then <see cref="Import"/> its cache, or <see cref="Prefill"/> here token
/// by token. A step allocates nothing.
/// </summary>
public sealed unsafe class DecodeEngine : IDisposable
{
    private readonly EngineLayer[] _layers;
    private readonly PackedMatrix _embedding;
    private readonly PackedMatrix _head; // the embedding itself when tied
    private readonly float[] _finalNorm;
    private readonly float[] _inverseFrequencies;
    private readonly WorkerPool _pool;
    private readonly StepContext _ctx;
    private readonly MatMulJob _matmul = new();
    private readonly FloatBuffer _x = new(0), _normed = new(0), _tmp = new(0), _hidden = new(0), _act = new(0), _logits = new(0);
    private readonly int _hiddenSize, _intermediate, _vocab, _heads, _kvHeads, _headDim;
    private readonly double _eps;
    private readonly DecodeSequence[] _one = new DecodeSequence[1];

    private DecodeEngine(LlamaConfig config, EngineOptions options, EngineLayer[] layers, PackedMatrix embedding, PackedMatrix head,
        float[] finalNorm, float[] inverseFrequencies)
    {
        Config = config;
        Options = options;
        _layers = layers;
        _embedding = embedding;
        _head = head;
        _finalNorm = finalNorm;
        _inverseFrequencies = inverseFrequencies;
        _hiddenSize = config.HiddenSize;
        _intermediate = config.IntermediateSize;
        _vocab = config.VocabSize;
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _eps = config.RmsNormEps;
        _pool = new WorkerPool(options.Threads);
        _ctx = new StepContext(_heads, _kvHeads, _headDim, _pool) { BatchInvariant = options.BatchInvariant };
    }

    public LlamaConfig Config { get; }

    public EngineOptions Options { get; }

    public int VocabSize => _vocab;

    /// <summary>Bytes of packed weights a step reads for one token: every layer matrix, the head, one embedding row and
    /// the norms. (A batch reads them once for all its sequences.)</summary>
    public long WeightBytesPerStep =>
        _layers.Sum(l => l.MatrixBytes + 2L * _hiddenSize * sizeof(float)) + _head.Bytes + _embedding.Bytes / _vocab +
        (long)_hiddenSize * sizeof(float);

    /// <summary>Bytes of packed weights held in memory (the embedding counted once when tied).</summary>
    public long WeightBytes =>
        _layers.Sum(l => l.MatrixBytes + 2L * _hiddenSize * sizeof(float)) + _head.Bytes +
        (ReferenceEquals(_head, _embedding) ? 0 : _embedding.Bytes) + (long)_hiddenSize * sizeof(float);

    /// <summary>What each layer's mixer is, for reports.</summary>
    public string Describe() =>
        $"{EngineOptions.FormatName(Options.Weights)} weights, {KernelIsaSupport.Name(Options.Isa)}, {Options.Threads} threads";

    /// <summary>Packs <paramref name="model"/>'s weights (a teacher, a converted model, or a hybrid; LoRA adapters must be
    /// merged first).</summary>
    public static DecodeEngine Create(LlamaForCausalLM model, EngineOptions? options = null)
    {
        options ??= new EngineOptions();
        if (options.Threads < 1)
            throw new LinearizeException($"engine threads must be at least 1, got {options.Threads}");
        if (!KernelIsaSupport.IsSupported(options.Isa))
            throw new LinearizeException($"this CPU does not support {KernelIsaSupport.Name(options.Isa)} kernels");
        var config = model.Config;
        var state = model.state_dict();
        var layers = new EngineLayer[config.NumHiddenLayers];
        try
        {
            for (int i = 0; i < layers.Length; i++)
                layers[i] = PackLayer(model, state, i, options.Weights);
            var embedding = Pack(state, "model.embed_tokens.weight", options.Weights);
            var head = config.TieWordEmbeddings ? embedding : Pack(state, "lm_head.weight", options.Weights);
            var invFreq = model.Model.Rope.InverseFrequencies.to(ScalarType.Float32).data<float>().ToArray();
            return new DecodeEngine(config, options, layers, embedding, head, Vector(state, "model.norm.weight")!, invFreq);
        }
        catch
        {
            foreach (var l in layers)
                l?.Dispose();
            throw;
        }
    }

    private static EngineLayer PackLayer(LlamaForCausalLM model, IDictionary<string, Tensor> state, int i, WeightFormat format)
    {
        string p = $"model.layers.{i}.";
        var c = model.Config;
        EngineMixer mixer = model.Model.Layers[i].SelfAttention switch
        {
            LlamaAttention a => new SoftmaxMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, a.SlidingWindow),
            SlidingWindowAttention s => new WindowMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, s.Window, s.Sinks, 1, 0, null),
            LigerAttention l => new WindowMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, l.Options.Window, 0, l.Options.Alpha,
                l.Options.Beta, new RecurrentBranch(l.Options, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim)),
            LolcatsAttention l => new LolcatsMixer(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, l),
            var other => throw new LinearizeException($"layer {i}: the decode engine has no step for {other.Describe()}; use --engine torch"),
        };
        return new EngineLayer
        {
            AttentionNorm = Vector(state, p + "input_layernorm.weight")!,
            Qkv = Pack(state, new[] { p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight" }, format),
            QkvBias = Concat(state, p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"),
            Output = Pack(state, p + "self_attn.o_proj.weight", format),
            OutputBias = Vector(state, p + "self_attn.o_proj.bias", optional: true),
            MlpNorm = Vector(state, p + "post_attention_layernorm.weight")!,
            GateUp = Pack(state, new[] { p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight" }, format),
            GateUpBias = Concat(state, p + "mlp.gate_proj.bias", p + "mlp.up_proj.bias"),
            Down = Pack(state, p + "mlp.down_proj.weight", format),
            DownBias = Vector(state, p + "mlp.down_proj.bias", optional: true),
            Mixer = mixer,
        };
    }

    private static Tensor Required(IDictionary<string, Tensor> state, string name)
    {
        if (state.TryGetValue(name, out var t))
            return t;
        string hint = state.Keys.Any(k => k.Contains("lora_", StringComparison.Ordinal))
            ? " (the model holds unmerged LoRA adapters: merge them first with 'linearize merge')"
            : "";
        throw new LinearizeException($"decode engine: the model has no tensor '{name}'{hint}");
    }

    private static float[] Floats(Tensor t)
    {
        using var f = t.detach().to(ScalarType.Float32).contiguous();
        return MemoryMarshal.Cast<byte, float>(f.bytes).ToArray();
    }

    private static PackedMatrix Pack(IDictionary<string, Tensor> state, string name, WeightFormat format) => Pack(state, new[] { name }, format);

    /// <summary>Stacks the named <c>[rows_i, C]</c> matrices into one and packs it.</summary>
    private static PackedMatrix Pack(IDictionary<string, Tensor> state, string[] names, WeightFormat format)
    {
        var parts = names.Select(n => Required(state, n)).ToArray();
        long cols = parts[0].shape[1];
        int rows = (int)parts.Sum(t => t.shape[0]);
        var all = new float[rows * cols];
        int offset = 0;
        foreach (var t in parts)
        {
            var f = Floats(t);
            f.CopyTo(all, offset);
            offset += f.Length;
        }

        return PackedMatrix.Pack(all, rows, (int)cols, format);
    }

    private static float[]? Vector(IDictionary<string, Tensor> state, string name, bool optional = false) =>
        state.TryGetValue(name, out var t) ? Floats(t) : optional ? null : Floats(Required(state, name));

    private static float[]? Concat(IDictionary<string, Tensor> state, params string[] names)
    {
        if (!names.Any(state.ContainsKey))
            return null;
        return names.SelectMany(n => Floats(Required(state, n))).ToArray();
    }

    /// <summary>A fresh sequence with empty state.</summary>
    public DecodeSequence CreateSequence() => new(_layers.Select(l => l.Mixer.CreateState()).ToArray(), this);

    /// <summary>
    /// A sequence holding what a TorchSharp prefill left in <paramref name="cache"/> (batch row <paramref name="row"/>,
    /// unpadded): KV caches, window rings and recurrent states are copied, so the next step continues
    /// exactly where the TorchSharp model would.
    /// </summary>
    public DecodeSequence Import(ModelCache cache, int row = 0)
    {
        if (cache.LayerCount != _layers.Length)
            throw new LinearizeException($"layer cache hand-over: the cache has {cache.LayerCount} layers, the engine {_layers.Length}");
        var seq = CreateSequence();
        try
        {
            if (cache.SeenTokens > 0)
                for (int l = 0; l < _layers.Length; l++)
                    _layers[l].Mixer.Import(seq.Layers[l], cache[l], row, cache.SeenTokens);
            seq.Position = cache.SeenTokens;
            return seq;
        }
        catch
        {
            seq.Dispose();
            throw;
        }
    }

    /// <summary>For benchmarks: a sequence as if it had seen <paramref name="tokens"/> tokens, its state filled with
    /// random values (decoding cost depends on the state's size, not its contents).</summary>
    public DecodeSequence CreateSyntheticSequence(long tokens, int seed = 0)
    {
        var seq = CreateSequence();
        var random = new Random(seed);
        foreach (var layer in seq.Layers)
            layer.FillSynthetic(tokens, random);
        seq.Position = tokens;
        return seq;
    }

    /// <summary>Feeds <paramref name="tokens"/> one step at a time; returns the last step's logits (valid until the next step).</summary>
    public ReadOnlySpan<float> Prefill(DecodeSequence sequence, ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("nothing to prefill");
        ReadOnlySpan<float> logits = default;
        foreach (int t in tokens)
            logits = Step(sequence, t);
        return logits;
    }

    /// <summary>One step of one sequence; the logits <c>[V]</c> stay valid until the next step.</summary>
    public ReadOnlySpan<float> Step(DecodeSequence sequence, int token)
    {
        _one[0] = sequence;
        Step(_one, 1, new ReadOnlySpan<int>(in token));
        _one[0] = null!;
        return new ReadOnlySpan<float>(_logits.Pointer, _vocab);
    }

    /// <summary>Logits of row <paramref name="b"/> of the last batch step.</summary>
    public ReadOnlySpan<float> Logits(int b) => new(_logits.Pointer + (long)b * _vocab, _vocab);

    /// <summary>
    /// One token for each of the first <paramref name="count"/> <paramref name="sequences"/>, each at its own position;
    /// every weight is read once for the whole batch. Logits per row via <see cref="Logits"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Step(DecodeSequence[] sequences, int count, ReadOnlySpan<int> tokens)
    {
        if (count < 1 || count > sequences.Length || tokens.Length < count)
            throw new ArgumentException($"batch of {count} needs that many sequences and tokens");
        for (int b = 0; b < count; b++)
        {
            if (!ReferenceEquals(sequences[b].Engine, this))
                throw new ArgumentException("a sequence belongs to another engine");
            if ((uint)tokens[b] >= (uint)_vocab)
                throw new LinearizeException($"token id {tokens[b]} is outside the vocabulary [0, {_vocab})");
        }

        EnsureBatch(count);
        int c = _hiddenSize;
        _ctx.Sequences = sequences;
        _ctx.Count = count;
        for (int b = 0; b < count; b++)
        {
            _embedding.DequantizeRow(tokens[b], new Span<float>(_x.Pointer + (long)b * c, c));
            RopeTables(sequences[b].Position, _ctx.Cos(b), _ctx.Sin(b));
        }

        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            fixed (float* attnNorm = layer.AttentionNorm, mlpNorm = layer.MlpNorm)
            {
                for (int b = 0; b < count; b++)
                    VectorOps.RmsNorm(_x.Pointer + (long)b * c, attnNorm, _normed.Pointer + (long)b * c, c, _eps);
                MatMul(layer.Qkv, _normed.Pointer, c, count, _ctx.Qkv.Pointer, _ctx.QkvStride, layer.QkvBias);
                _ctx.Layer = l;
                layer.Mixer.Step(_ctx);
                int attnWidth = _heads * _headDim;
                MatMul(layer.Output, _ctx.Attention.Pointer, attnWidth, count, _tmp.Pointer, c, layer.OutputBias);
                AddInPlace(_x.Pointer, _tmp.Pointer, count * c);

                for (int b = 0; b < count; b++)
                    VectorOps.RmsNorm(_x.Pointer + (long)b * c, mlpNorm, _normed.Pointer + (long)b * c, c, _eps);
                int i2 = 2 * _intermediate;
                MatMul(layer.GateUp, _normed.Pointer, c, count, _hidden.Pointer, i2, layer.GateUpBias);
                for (int b = 0; b < count; b++)
                    VectorOps.SwiGlu(_hidden.Pointer + (long)b * i2, _hidden.Pointer + (long)b * i2 + _intermediate,
                        _act.Pointer + (long)b * _intermediate, _intermediate);
                MatMul(layer.Down, _act.Pointer, _intermediate, count, _tmp.Pointer, c, layer.DownBias);
                AddInPlace(_x.Pointer, _tmp.Pointer, count * c);
            }
        }

        fixed (float* finalNorm = _finalNorm)
            for (int b = 0; b < count; b++)
                VectorOps.RmsNorm(_x.Pointer + (long)b * c, finalNorm, _normed.Pointer + (long)b * c, c, _eps);
        MatMul(_head, _normed.Pointer, c, count, _logits.Pointer, _vocab, null);
        for (int b = 0; b < count; b++)
            sequences[b].Position++;
        _ctx.Sequences = Array.Empty<DecodeSequence>();
    }

    /// <summary>cos/sin of HF's RoPE at <paramref name="position"/>: <c>freq_i = (float)p · inv_freq_i</c> in float32, as
    /// <see cref="RotaryEmbedding"/> builds its table.</summary>
    private void RopeTables(long position, float* cos, float* sin)
    {
        for (int i = 0; i < _inverseFrequencies.Length; i++)
        {
            float f = (float)position * _inverseFrequencies[i];
            cos[i] = MathF.Cos(f);
            sin[i] = MathF.Sin(f);
        }
    }

    private void MatMul(PackedMatrix w, float* x, int xStride, int count, float* y, int yStride, float[]? bias)
    {
        _matmul.Matrix = w;
        _matmul.X = x;
        _matmul.XStride = xStride;
        _matmul.Count = count;
        _matmul.Y = y;
        _matmul.YStride = yStride;
        _matmul.Isa = Options.Isa;
        _matmul.BatchInvariant = Options.BatchInvariant;
        if (w.Bytes < Options.ParallelMinBytes)
            _matmul.Execute(0, w.Rows);
        else
            _pool.Run(_matmul, w.Rows, grain: 8);
        _matmul.Matrix = null;
        if (bias is null)
            return;
        fixed (float* bp = bias)
            for (int b = 0; b < count; b++)
                AddInPlace(y + (long)b * yStride, bp, bias.Length);
    }

    private static void AddInPlace(float* x, float* y, int n)
    {
        var xs = new Span<float>(x, n);
        System.Numerics.Tensors.TensorPrimitives.Add(xs, new ReadOnlySpan<float>(y, n), xs);
    }

    private void EnsureBatch(int batch)
    {
        _ctx.EnsureBatch(batch);
        _x.EnsureLength((long)batch * _hiddenSize);
        _normed.EnsureLength((long)batch * _hiddenSize);
        _tmp.EnsureLength((long)batch * _hiddenSize);
        _hidden.EnsureLength((long)batch * 2 * _intermediate);
        _act.EnsureLength((long)batch * _intermediate);
        _logits.EnsureLength((long)batch * _vocab);
    }

    public void Dispose()
    {
        _pool.Dispose();
        _ctx.Dispose();
        foreach (var l in _layers)
            l.Dispose();
        _embedding.Dispose();
        if (!ReferenceEquals(_head, _embedding))
            _head.Dispose();
        foreach (var b in new[] { _x, _normed, _tmp, _hidden, _act, _logits })
            b.Dispose();
    }
}
