using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Kernels;
using Linearize.Inference.Mixers;
using Linearize.Inference.Threading;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling.Llama;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>
/// A CPU inference engine beside the TorchSharp model: the same network, with every weight packed once
/// (<see cref="WeightFormat"/>). Prefill feeds a prompt in blocks of rows (matrix × matrix products, one pass of each
/// mixer per block); decoding steps one token per sequence, streaming every weight once per step for the whole batch.
/// Either way a row is embed → per layer (RMSNorm, fused q/k/v, mixer, o_proj, residual, RMSNorm, fused gate/up,
/// SwiGLU, down, residual) → norm → head, split across a <see cref="WorkerPool"/>. The TorchSharp model stays the
/// training path and this engine's reference (tests compare the two; <see cref="Import"/> continues from a TorchSharp
/// cache). A step allocates nothing.
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
    /// <summary>Most weight bytes a thread claims at once when decoding: each thread should stream long runs (the
    /// hardware prefetchers restart at every jump, and the kernels read a chunk as four streams a quarter apart), and a
    /// descheduled thread holds at most one chunk. On the Llama-3.2-1B shape, 2 threads, up to 1 MiB rather than 128 KiB
    /// took decoding from 0.91–0.93 to 0.94–0.95 of the bandwidth floor in float32 and 0.74–0.77 to 0.79–0.82 in
    /// bfloat16 (docs/RESULTS.md, "Decoding from memory, longer runs").</summary>
    private const int DecodeChunkBytes = 1 << 20;

    /// <summary>Fewest chunks per thread a matrix is cut into when decoding (its chunks shrink below
    /// <see cref="DecodeChunkBytes"/> to reach it, down to <see cref="MinDecodeChunkBytes"/>), so that a small matrix
    /// still keeps every thread busy and the threads finish together.</summary>
    private const int DecodeChunksPerThread = 4;

    /// <summary>Fewest weight bytes in a decoding chunk, so that claiming a chunk stays a small part of its work.</summary>
    private const int MinDecodeChunkBytes = 64 * 1024;

    private readonly MatMulJob _matmul = new();
    private readonly RowsJob _rows = new();
    private readonly QuantizeJob _quantize = new();
    private readonly Q8Activations _quantized = new(); // a Q8 product's activations, quantized once per product
    private readonly BFloat16Activations _rounded = new(); // a bfloat16 product's activations (EngineOptions.BFloat16Products)
    private readonly TokenPanels _panels = new(); // a tiled float32 product's activations, transposed (AVX-512 prefill)
    private SpanReadJob? _weightReader; // TimeWeightRead's pieces, made on first use
    private readonly FloatBuffer _x = new(0), _normed = new(0), _tmp = new(0), _hidden = new(0), _act = new(0), _logits = new(0);
    private readonly int _hiddenSize, _intermediate, _vocab, _heads, _kvHeads, _headDim;
    private readonly double _eps;
    private readonly DecodeSequence[] _one = new DecodeSequence[1];
    private readonly int[] _segmentLengths = new int[1];
    private DecodeSequence[] _rowSequences = Array.Empty<DecodeSequence>();
    private readonly IDisposable? _weightOwner; // what keeps in-place rows mapped (a checkpoint), or null

    private DecodeEngine(LlamaConfig config, EngineOptions options, EngineLayer[] layers, PackedMatrix embedding, PackedMatrix head,
        float[] finalNorm, float[] inverseFrequencies, IDisposable? weightOwner)
    {
        _weightOwner = weightOwner;
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
        // Delta-rule and learned-gate layers append their logits to the fused projection: the context's rows make room for the widest.
        int extraColumns = layers.Max(l => l.Qkv.Rows) - (_heads + 2 * _kvHeads) * _headDim;
        _ctx = new StepContext(_heads, _kvHeads, _headDim, _pool, extraColumns) { BatchInvariant = options.BatchInvariant };
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

    /// <summary>Of <see cref="WeightBytes"/>, those used in place from the mapped checkpoint (<see cref="EngineOptions.WeightsInPlace"/>):
    /// the page cache's, not this process's own allocation.</summary>
    public long InPlaceWeightBytes =>
        _layers.Sum(l => l.Qkv.InPlaceBytes + l.Output.InPlaceBytes + l.GateUp.InPlaceBytes + l.Down.InPlaceBytes) + _head.InPlaceBytes +
        (ReferenceEquals(_head, _embedding) ? 0 : _embedding.InPlaceBytes);

    /// <summary>Reads every matrix a step multiplies (the layers' and the head: <see cref="WeightBytesPerStep"/> but for
    /// one embedding row and the norms) where it lies, on this engine's threads, with no arithmetic; returns the
    /// seconds it took. A step cannot be faster than this on the same memory at the same moment, so a benchmark that
    /// alternates it with steps gets a floor that moves with the machine's load (a separate probe of a fresh buffer
    /// does not: other pages, other moments).</summary>
    public double TimeWeightRead()
    {
        var reader = WeightReader;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        _pool.Run(reader, reader.Count);
        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>The read <see cref="TimeWeightRead"/> times, made on first use (tests check its bytes and its sum).</summary>
    internal SpanReadJob WeightReader => _weightReader ??= new SpanReadJob(StepMatrices().SelectMany(m => m.Storage()));

    private IEnumerable<PackedMatrix> StepMatrices() =>
        _layers.SelectMany(l => new[] { l.Qkv, l.Output, l.GateUp, l.Down }).Append(_head);

    /// <summary>What each layer's mixer is, for reports.</summary>
    public string Describe() =>
        $"{EngineOptions.FormatName(Options.Weights)} weights" +
        (Options.BFloat16Products && Options.Weights == WeightFormat.BFloat16 ? $" × bfloat16 activations ({MatMulBFloat16.Describe(Options.Isa)})" : "") +
        $", {KernelIsaSupport.Name(Options.Isa)}, {Options.Threads} threads";

    /// <summary>Packs <paramref name="model"/>'s weights (a teacher, a converted model, or a hybrid; LoRA adapters must be
    /// merged first). <paramref name="mixerFor"/> gives each layer's engine mixer: the engine does not know the
    /// methods, <c>Methods.Engines.Create</c> passes the registry's choice.</summary>
    internal static DecodeEngine Create(LlamaForCausalLM model, Func<TokenMixer, LlamaConfig, EngineMixer> mixerFor, EngineOptions? options = null)
    {
        var config = model.Config;
        var mixers = model.Model.Layers.Select(l => mixerFor(l.SelfAttention, config)).ToArray();
        var invFreq = model.Model.Rope.InverseFrequencies.to(ScalarType.Float32).data<float>().ToArray();
        return Create(config, new StateDictWeights(model.state_dict(), config.Source), mixers, invFreq, options);
    }

    /// <summary>Packs the weights <paramref name="weights"/> holds for a model of <paramref name="config"/>, layer
    /// <c>i</c> running <paramref name="mixers"/>[i]; <paramref name="invFreq"/> are the RoPE inverse frequencies
    /// <c>[D/2]</c>. The mixers belong to the engine from here on (disposed with it, or on failure), and so does
    /// <paramref name="weightOwner"/>, what keeps <paramref name="weights"/>' mapping alive: it is disposed with the engine
    /// when rows are used in place, and at once otherwise (or on failure).</summary>
    internal static DecodeEngine Create(LlamaConfig config, IWeightSource weights, IReadOnlyList<EngineMixer> mixers, float[] invFreq,
        EngineOptions? options = null, IDisposable? weightOwner = null)
    {
        try
        {
            var engine = Pack(config, weights, mixers, invFreq, options ?? new EngineOptions(), weightOwner);
            if (engine.InPlaceWeightBytes == 0)
                weightOwner?.Dispose();
            return engine;
        }
        catch
        {
            weightOwner?.Dispose();
            throw;
        }
    }

    private static DecodeEngine Pack(LlamaConfig config, IWeightSource weights, IReadOnlyList<EngineMixer> mixers, float[] invFreq,
        EngineOptions options, IDisposable? weightOwner)
    {
        if (options.Threads < 1)
            throw new LinearizeException($"engine threads must be at least 1, got {options.Threads}");
        if (!KernelIsaSupport.IsSupported(options.Isa))
            throw new LinearizeException($"this CPU does not support {KernelIsaSupport.Name(options.Isa)} kernels");
        var layers = new EngineLayer[config.NumHiddenLayers];
        PackedMatrix? embedding = null, head = null;
        try
        {
            for (int i = 0; i < layers.Length; i++)
                layers[i] = EngineWeightPacking.Layer(config, weights, i, options, mixers[i]);
            embedding = EngineWeightPacking.Matrix(weights, "model.embed_tokens.weight", options);
            head = config.TieWordEmbeddings ? embedding : EngineWeightPacking.Matrix(weights, "lm_head.weight", options);
            return new DecodeEngine(config, options, layers, embedding, head, EngineWeightPacking.Vector(weights, "model.norm.weight")!,
                invFreq, weightOwner);
        }
        catch
        {
            foreach (var l in layers)
                l?.Dispose();
            embedding?.Dispose();
            head?.Dispose();
            throw;
        }
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

    /// <summary>Feeds <paramref name="tokens"/> one step at a time — the slow, obviously correct twin of
    /// <see cref="Prefill(DecodeSequence, ReadOnlySpan{int})"/>; returns the last step's logits.</summary>
    public ReadOnlySpan<float> PrefillByStepping(DecodeSequence sequence, ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("nothing to prefill");
        ReadOnlySpan<float> logits = default;
        foreach (int t in tokens)
            logits = Step(sequence, t);
        return logits;
    }

    /// <summary>
    /// Feeds a prompt through the engine in blocks of up to <see cref="EngineOptions.PrefillChunk"/> tokens: each block
    /// is one matrix × matrix product per weight (compute-bound, <see cref="MatMat"/>) and one pass of each mixer over
    /// its rows, and leaves the sequence's state as stepping the tokens would. Returns the logits after the last token
    /// (valid until the next call).
    /// </summary>
    public ReadOnlySpan<float> Prefill(DecodeSequence sequence, ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("nothing to prefill");
        Span<float> none = default;
        Prefill(sequence, tokens, tokens.Length - 1, none);
        return new ReadOnlySpan<float>(_logits.Pointer, _vocab);
    }

    /// <summary>
    /// Like <see cref="Prefill(DecodeSequence, ReadOnlySpan{int})"/>, and copies the logits after each token from index
    /// <paramref name="logitsFrom"/> on into <paramref name="logits"/> <c>[tokens.Length − logitsFrom, V]</c> (scoring a
    /// continuation; an empty span keeps only the last row in the engine's buffer).
    /// </summary>
    public void Prefill(DecodeSequence sequence, ReadOnlySpan<int> tokens, int logitsFrom, Span<float> logits)
    {
        if (!ReferenceEquals(sequence.Engine, this))
            throw new ArgumentException("a sequence belongs to another engine");
        if ((uint)logitsFrom >= (uint)tokens.Length)
            throw new ArgumentOutOfRangeException(nameof(logitsFrom));
        if (!logits.IsEmpty && logits.Length < (long)(tokens.Length - logitsFrom) * _vocab)
            throw new ArgumentException("the logits buffer is too small", nameof(logits));
        int chunk = Options.PrefillChunk;
        for (int offset = 0; offset < tokens.Length; offset += chunk)
        {
            int n = Math.Min(chunk, tokens.Length - offset);
            _one[0] = sequence;
            _segmentLengths[0] = n;
            int from = Math.Max(0, logitsFrom - offset);
            if (from >= n && offset + n < tokens.Length)
                from = -1; // no logits wanted from this block
            else if (logits.IsEmpty)
                from = n - 1;
            Forward(_one, _segmentLengths, 1, tokens.Slice(offset, n), from < 0 ? 0 : n - from, from);
            if (!logits.IsEmpty && from >= 0)
                new ReadOnlySpan<float>(_logits.Pointer, (n - from) * _vocab).CopyTo(logits.Slice((offset + from - logitsFrom) * _vocab));
        }

        _one[0] = null!;
    }

    /// <summary>
    /// Prefills several prompts together: their tokens share blocks of up to <see cref="EngineOptions.PrefillChunk"/>
    /// rows, so short prompts fill a matrix product between them. Returns the logits after each prompt's last token.
    /// Each prompt's result equals prefilling it alone up to float32 rounding of the products.
    /// </summary>
    public float[][] Prefill(IReadOnlyList<DecodeSequence> sequences, IReadOnlyList<int[]> prompts)
    {
        if (sequences.Count != prompts.Count)
            throw new ArgumentException("one prompt per sequence");
        var result = new float[prompts.Count][];
        int chunk = Options.PrefillChunk;
        var done = new int[prompts.Count];
        var batch = new DecodeSequence[prompts.Count];
        var lengths = new int[prompts.Count];
        var owners = new int[prompts.Count];
        var tokens = new int[chunk];
        var logitRows = new int[prompts.Count];
        int next = 0;
        for (int i = 0; i < prompts.Count; i++)
            if (prompts[i].Length == 0)
                throw new LinearizeException("a prompt has no tokens (not even BOS); nothing to condition on");
        while (next < prompts.Count)
        {
            int rows = 0, segments = 0, finished = 0;
            for (int i = next; i < prompts.Count && rows < chunk; i++)
            {
                int n = Math.Min(chunk - rows, prompts[i].Length - done[i]);
                prompts[i].AsSpan(done[i], n).CopyTo(tokens.AsSpan(rows));
                batch[segments] = sequences[i];
                lengths[segments] = n;
                owners[segments++] = i;
                rows += n;
            }

            // Logits only where a prompt ends inside this block: its last row.
            int wanted = 0, row = 0;
            for (int s = 0; s < segments; s++)
            {
                row += lengths[s];
                if (done[owners[s]] + lengths[s] == prompts[owners[s]].Length)
                    logitRows[wanted++] = row - 1;
            }

            Forward(batch, lengths, segments, tokens.AsSpan(0, rows), logitRows.AsSpan(0, wanted));
            int k = 0;
            for (int s = 0; s < segments; s++)
            {
                int i = owners[s];
                done[i] += lengths[s];
                if (done[i] == prompts[i].Length)
                {
                    result[i] = Logits(k++).ToArray();
                    finished++;
                }
            }

            while (next < prompts.Count && done[next] == prompts[next].Length)
                next++;
        }

        Array.Clear(batch);
        return result;
    }

    /// <summary>One step of one sequence; the logits <c>[V]</c> stay valid until the next step.</summary>
    public ReadOnlySpan<float> Step(DecodeSequence sequence, int token)
    {
        _one[0] = sequence;
        Step(_one, 1, new ReadOnlySpan<int>(in token));
        _one[0] = null!;
        return new ReadOnlySpan<float>(_logits.Pointer, _vocab);
    }

    /// <summary>When set, every forward pass adds the time of each of its parts to it (<see cref="StepProfile"/>); null
    /// (the default) times nothing.</summary>
    public StepProfile? Profile { get; set; }

    /// <summary>A timestamp for <see cref="Record"/> when profiling, else 0 (no clock read).</summary>
    private long Mark() => Profile is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();

    private void Record(StepRegion region, long start) => Profile?.Add(region, start);

    /// <summary>Logits of row <paramref name="b"/> of the last batch step (or of the last prefill's rows that kept logits).</summary>
    public ReadOnlySpan<float> Logits(int b) => new(_logits.Pointer + (long)b * _vocab, _vocab);

    /// <summary>
    /// One token for each of the first <paramref name="count"/> <paramref name="sequences"/>, each at its own position;
    /// every weight is read once for the whole batch. Logits per row via <see cref="Logits"/>.
    /// </summary>
    public void Step(DecodeSequence[] sequences, int count, ReadOnlySpan<int> tokens)
    {
        if (count < 1 || count > sequences.Length || tokens.Length < count)
            throw new ArgumentException($"batch of {count} needs that many sequences and tokens");
        Forward(sequences, null, count, tokens[..count], default);
    }

    private void Forward(DecodeSequence[] sequences, int[]? segmentLengths, int segments, ReadOnlySpan<int> tokens, int logitCount, int logitFrom)
    {
        Span<int> rows = stackalloc int[Math.Max(0, logitCount)];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = logitFrom + i;
        Forward(sequences, segmentLengths, segments, tokens, rows);
    }

    /// <summary>
    /// The forward pass over <c>tokens.Length</c> rows. Decoding (<paramref name="segmentLengths"/> null): row b is one
    /// token of <c>sequences[b]</c>, and every row gets logits. Prefill: segment s is <c>segmentLengths[s]</c> consecutive
    /// tokens of <c>sequences[s]</c>, and only <paramref name="logitRows"/> get logits (in that order, via
    /// <see cref="Logits"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Forward(DecodeSequence[] sequences, int[]? segmentLengths, int segments, ReadOnlySpan<int> tokens, ReadOnlySpan<int> logitRows)
    {
        bool prefill = segmentLengths is not null;
        int count = tokens.Length;
        for (int s = 0; s < segments; s++)
            if (!ReferenceEquals(sequences[s].Engine, this))
                throw new ArgumentException("a sequence belongs to another engine");
        for (int b = 0; b < count; b++)
            if ((uint)tokens[b] >= (uint)_vocab)
                throw new LinearizeException($"token id {tokens[b]} is outside the vocabulary [0, {_vocab})");

        EnsureBatch(count);
        int c = _hiddenSize;
        _ctx.Count = count;
        _ctx.Prefill = prefill;
        if (prefill)
        {
            _ctx.EnsureSegments(segments, count);
            _rowSequences = _rowSequences.Length >= count ? _rowSequences : new DecodeSequence[count];
            int row = 0;
            for (int s = 0; s < segments; s++)
            {
                _ctx.SegmentStart[s] = row;
                _ctx.SegmentLength[s] = segmentLengths![s];
                for (int i = 0; i < segmentLengths[s]; i++, row++)
                {
                    _rowSequences[row] = sequences[s];
                    _ctx.RowSegment[row] = s;
                }
            }

            _ctx.SegmentCount = segments;
            _ctx.Sequences = _rowSequences;
        }
        else
        {
            _ctx.Sequences = sequences;
        }

        long t = Mark();
        for (int b = 0; b < count; b++)
        {
            _embedding.DequantizeRow(tokens[b], new Span<float>(_x.Pointer + (long)b * c, c));
            RopeTables(_ctx.Position(b), _ctx.Cos(b), _ctx.Sin(b));
        }

        Record(StepRegion.Embedding, t);

        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            fixed (float* attnNorm = layer.AttentionNorm, mlpNorm = layer.MlpNorm)
            {
                t = Mark();
                Rows(RowsJob.Kind.RmsNorm, _x.Pointer, c, _normed.Pointer, c, c, count, attnNorm);
                Record(StepRegion.Norms, t);
                t = Mark();
                MatMul(layer.Qkv, _normed.Pointer, c, count, _ctx.Qkv.Pointer, _ctx.QkvStride, layer.QkvBias);
                Record(StepRegion.QkvProjection, t);
                _ctx.Layer = l;
                t = Mark();
                if (prefill)
                    layer.Mixer.Prefill(_ctx);
                else
                    layer.Mixer.Step(_ctx);
                Record(StepRegion.Mixer, t);
                int attnWidth = _heads * _headDim;
                t = Mark();
                MatMul(layer.Output, _ctx.Attention.Pointer, attnWidth, count, _tmp.Pointer, c, layer.OutputBias);
                Record(StepRegion.OutputProjection, t);
                t = Mark();
                Rows(RowsJob.Kind.Add, _tmp.Pointer, c, _x.Pointer, c, c, count, null);
                Record(StepRegion.Residual, t);

                t = Mark();
                Rows(RowsJob.Kind.RmsNorm, _x.Pointer, c, _normed.Pointer, c, c, count, mlpNorm);
                Record(StepRegion.Norms, t);
                int i2 = 2 * _intermediate;
                t = Mark();
                MatMul(layer.GateUp, _normed.Pointer, c, count, _hidden.Pointer, i2, layer.GateUpBias);
                Record(StepRegion.GateUpProjection, t);
                t = Mark();
                Rows(RowsJob.Kind.SwiGlu, _hidden.Pointer, i2, _act.Pointer, _intermediate, _intermediate, count, null);
                Record(StepRegion.SwiGlu, t);
                t = Mark();
                MatMul(layer.Down, _act.Pointer, _intermediate, count, _tmp.Pointer, c, layer.DownBias);
                Record(StepRegion.DownProjection, t);
                t = Mark();
                Rows(RowsJob.Kind.Add, _tmp.Pointer, c, _x.Pointer, c, c, count, null);
                Record(StepRegion.Residual, t);
            }
        }

        // Logits: every row when decoding, the requested rows (compacted) in prefill.
        int logitCount = prefill ? logitRows.Length : count;
        t = Mark();
        _logits.EnsureLength((long)Math.Max(1, logitCount) * _vocab);
        fixed (float* finalNorm = _finalNorm)
            for (int k = 0; k < logitCount; k++)
            {
                int b = prefill ? logitRows[k] : k;
                VectorOps.RmsNorm(_x.Pointer + (long)b * c, finalNorm, _normed.Pointer + (long)k * c, c, _eps);
            }

        if (logitCount > 0)
            MatMul(_head, _normed.Pointer, c, logitCount, _logits.Pointer, _vocab, null);
        Record(StepRegion.Head, t);
        Profile?.EndPass();
        if (prefill)
        {
            for (int s = 0; s < segments; s++)
                sequences[s].Position += segmentLengths![s];
            Array.Clear(_rowSequences, 0, count);
        }
        else
        {
            for (int b = 0; b < count; b++)
                sequences[b].Position++;
        }

        _ctx.Prefill = false;
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
        // Prefill: the compute-bound tiled product, in blocks a thread claims whole. Always tiled, however few the rows,
        // so a row's arithmetic does not depend on how a prompt was cut into blocks or what else shared its block.
        _matmul.Tiled = _ctx.Prefill;
        _matmul.Quantized = w.Format == WeightFormat.Q8 ? Quantize(x, xStride, count, w.Cols) : null;
        _matmul.Rounded = w.Format == WeightFormat.BFloat16 && Options.BFloat16Products ? Round(x, xStride, count, w.Cols) : null;
        _matmul.Panels = _matmul.Tiled && Options.Isa == KernelIsa.Avx512 && w.Format != WeightFormat.Q8 && _matmul.Rounded is null
            ? Transpose(x, xStride, count, w.Cols) : null;
        // Decoding: chunks of whole 4-row tiles (MatVec's row pairs, MatMulBFloat16's and MatVecQ8's four rows).
        int grain = _matmul.Tiled ? MatMat.BlockRows : DecodeGrain(w);
        if (w.Bytes * Math.Min(count, 16) < Options.ParallelMinBytes)
            _matmul.Execute(0, w.Rows);
        else
            _pool.Run(_matmul, w.Rows, grain);
        _matmul.Matrix = null;
        _matmul.Quantized = null;
        _matmul.Rounded = null;
        _matmul.Panels = null;
        if (bias is null)
            return;
        fixed (float* bp = bias)
            for (int b = 0; b < count; b++)
                AddInPlace(y + (long)b * yStride, bp, bias.Length);
    }

    /// <summary>Rows per decoding chunk of <paramref name="w"/>: <see cref="DecodeChunkBytes"/>, or less so that every
    /// thread gets <see cref="DecodeChunksPerThread"/> chunks, never below <see cref="MinDecodeChunkBytes"/> nor 8 rows;
    /// a multiple of 4.</summary>
    private int DecodeGrain(PackedMatrix w)
    {
        long bytes = Math.Clamp(w.Bytes / ((long)_pool.Threads * DecodeChunksPerThread), MinDecodeChunkBytes, DecodeChunkBytes);
        return (int)Math.Max(8, bytes / Math.Max(1, w.Bytes / w.Rows)) & ~3;
    }

    /// <summary>The activation rows of a Q8 product quantized to Q8 blocks (llama.cpp's rule: its Q8_0 weights take
    /// Q8_0 activations).</summary>
    private Q8Activations Quantize(float* x, int xStride, int count, int cols)
    {
        _quantized.Prepare(count, cols);
        PrepareActivations(_quantized, null, null, x, xStride, count);
        return _quantized;
    }

    /// <summary>The activation rows of a bfloat16 product rounded to bfloat16 (<see cref="EngineOptions.BFloat16Products"/>),
    /// as <see cref="Quantize"/> does for Q8.</summary>
    private BFloat16Activations Round(float* x, int xStride, int count, int cols)
    {
        _rounded.Prepare(count, cols);
        PrepareActivations(null, _rounded, null, x, xStride, count);
        return _rounded;
    }

    /// <summary>The activation rows of a tiled float32 product transposed into token panels (AVX-512 prefill), as
    /// <see cref="Quantize"/> does for Q8.</summary>
    private TokenPanels Transpose(float* x, int xStride, int count, int cols)
    {
        _panels.Prepare(count, cols);
        PrepareActivations(null, null, _panels, x, xStride, count);
        return _panels;
    }

    /// <summary>Fills whichever target is given from <paramref name="count"/> activation rows: on this thread for a
    /// decoding batch, across the pool for a prefill block (from <see cref="ParallelActivationRows"/> rows on).</summary>
    private void PrepareActivations(Q8Activations? quantized, BFloat16Activations? rounded, TokenPanels? panels, float* x, int xStride,
        int count)
    {
        _quantize.Target = quantized;
        _quantize.Rounded = rounded;
        _quantize.Panels = panels;
        _quantize.X = x;
        _quantize.XStride = xStride;
        if (count < ParallelActivationRows)
            _quantize.Execute(0, count);
        else
            _pool.Run(_quantize, count, grain: panels is null ? 8 : TokenPanels.PanelTokens); // whole panels: see TokenPanels.FillRows
    }

    /// <summary>Below this many rows, quantizing, rounding or transposing activations costs less than waking a worker.</summary>
    private const int ParallelActivationRows = 32;

    /// <summary>A row-wise operation over <paramref name="count"/> rows: on this thread for a decoding batch, across the
    /// pool for a prefill block (where a block's norms and activations are worth splitting).</summary>
    private void Rows(RowsJob.Kind op, float* x, int xStride, float* y, int yStride, int width, int count, float* weight)
    {
        _rows.Op = op;
        _rows.X = x;
        _rows.XStride = xStride;
        _rows.Y = y;
        _rows.YStride = yStride;
        _rows.Width = width;
        _rows.Weight = weight;
        _rows.Eps = _eps;
        if (count < 32)
            _rows.Execute(0, count);
        else
            _pool.Run(_rows, count, grain: 8);
    }

    private static void AddInPlace(float* x, float* y, int n)
    {
        var xs = new Span<float>(x, n);
        System.Numerics.Tensors.TensorPrimitives.Add(xs, new ReadOnlySpan<float>(y, n), xs);
    }

    private void EnsureBatch(int batch)
    {
        _ctx.EnsureBatch(batch);
        _ctx.EnsureSegments(1, batch);
        _x.EnsureLength((long)batch * _hiddenSize);
        _normed.EnsureLength((long)batch * _hiddenSize);
        _tmp.EnsureLength((long)batch * _hiddenSize);
        _hidden.EnsureLength((long)batch * 2 * _intermediate);
        _act.EnsureLength((long)batch * _intermediate);
    }

    public void Dispose()
    {
        _pool.Dispose();
        _ctx.Dispose();
        _quantized.Dispose();
        _rounded.Dispose();
        _panels.Dispose();
        foreach (var l in _layers)
            l.Dispose();
        _embedding.Dispose();
        if (!ReferenceEquals(_head, _embedding))
            _head.Dispose();
        _weightOwner?.Dispose(); // after every in-place matrix is gone
        foreach (var b in new[] { _x, _normed, _tmp, _hidden, _act, _logits })
            b.Dispose();
    }
}
