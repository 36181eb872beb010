using System.Runtime.CompilerServices;
using Linearize.Caching;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Kernels;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The engine twin of <see cref="LolcatsAttention"/>: per (sequence, query head), first the keys that just left the
/// window are featurized with φk and added to the linear state (sliding window: the key w positions back; terrace: at
/// the first token of a block, the whole block before the previous one), then
/// <c>o = (γ Σ_W e^{s−c} v + λ φq·S_v) / (γ Σ_W e^{s−c} + λ φq·S_z)</c> with the stabilizer c over the window scores.
/// The current key/value enters the ring only after every head has read it. Same fold points as
/// <see cref="LolcatsLayerCache"/>, so a TorchSharp prefill hands over exactly. With a sparse cache (LoLA,
/// docs/METHODS.md §1.7; sliding window only) the softmax also covers up to N cached pairs per KV head and nothing is
/// folded before the query: after every head has read, the pair leaving the window is scored against the linear state
/// and offered to the slots, and the loser is folded (<see cref="LolcatsSparseRule"/>, the TorchSharp layer's own code).
/// </summary>
internal sealed unsafe class LolcatsMixer : EngineMixer
{
    private readonly LolcatsOptions _options;
    private readonly int _window, _capacity, _featureDim, _features, _sparse;
    private readonly float[] _mapQ, _mapK, _biasQ, _biasK, _gamma, _lambda; // maps [H, D, d'], biases [H]
    private readonly float _eps;
    private readonly ScratchLayout _layout;
    private StepContext? _ctx;

    public LolcatsMixer(int heads, int kvHeads, int headDim, LolcatsAttention layer) : base(heads, kvHeads, headDim)
    {
        _options = layer.Options;
        _window = _options.Window;
        _capacity = _options.Lag;
        _featureDim = _options.EffectiveFeatureDim(headDim);
        _features = _options.FeatureWidth(headDim);
        _eps = (float)_options.FeatureEps;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        float[] Floats(Tensor? t, int count) => t is null ? new float[count] : t.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        _mapQ = Floats(layer.FeatureMapQ.Mlp.Weight, 0);
        _mapK = Floats(layer.FeatureMapK.Mlp.Weight, 0);
        _biasQ = Floats(layer.FeatureMapQ.Mlp.Bias, heads);
        _biasK = Floats(layer.FeatureMapK.Mlp.Bias, heads);
        var (gamma, lambda) = layer.Factors();
        _gamma = Floats(gamma, heads);
        _lambda = Floats(lambda, heads);
        _sparse = _options.SparseCache;
        _layout = new ScratchLayout(_window, headDim, _features, _featureDim, _sparse);
    }

    /// <summary>Where each region of one (row, head)'s scratch starts, in floats from its base: the window scores
    /// [2w, the terrace's widest, + the sparse slots], the window numerator [D], φ [F], the feature map's
    /// pre-activation [d'], a state read [D + 1] (the recall error).</summary>
    private readonly record struct ScratchLayout
    {
        public ScratchLayout(int window, int d, int features, int featureDim, int sparse)
        {
            int scores = 2 * window + sparse;
            (Scores, Window, Phi, Pre, Read) = (0, scores, scores + d, scores + d + features, scores + d + features + featureDim);
            Floats = scores + d + features + featureDim + (d + 1L) + 32;
        }

        public int Read { get; }

        public int Scores { get; }

        public int Window { get; }

        public int Phi { get; }

        public int Pre { get; }

        public long Floats { get; }
    }

    public override LayerState CreateState() => new LolcatsState(KvHeads, HeadDim, _capacity, Heads, _features, _sparse);

    /// <summary>Scratch per unit (<see cref="ScratchLayout"/>).</summary>
    private long UnitFloats => _layout.Floats;

    /// <summary>Multiply-adds of one (row, head) unit, roughly: the window, both feature maps and the state read.</summary>
    private long UnitWork => 2L * (_window + _sparse) * HeadDim + 2L * HeadDim * _featureDim + 2L * _features * (HeadDim + 1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Step(StepContext ctx)
    {
        ctx.RotateAll(1f);
        int units = ctx.Count * Heads;
        ctx.EnsureScratch(units * UnitFloats);
        _ctx = ctx;
        ctx.Run(this, units, UnitWork, grain: StepGrain(ctx, units));
        _ctx = null;
        for (int b = 0; b < ctx.Count; b++)
            Remember(ctx, b, ctx.Sequences[b].Position);
        if (_sparse == 0)
            return;
        // Every head has read the slots: now the pair leaving the window is offered (the ring still holds it).
        for (int b = 0; b < ctx.Count; b++)
        {
            var state = (LolcatsState)ctx.Sequences[b].Layers[ctx.Layer];
            long pos = ctx.Sequences[b].Position;
            for (int kvHead = 0; kvHead < KvHeads; kvHead++)
                if (pos - (_window - 1) >= 0)
                    Offer(state, kvHead, pos - (_window - 1), state.Key(kvHead, pos - (_window - 1)), state.Value(kvHead, pos - (_window - 1)),
                        ctx.Scratch.Pointer);
        }
    }

    /// <summary>Prefill: units (segment, query head), each running its rows in order with the step's arithmetic (the
    /// state S of a head depends on every earlier row); keys before the segment come from the ring, the segment's from
    /// its rows. Then the segment's keys enter the ring. With a sparse cache the units are (segment, KV head): after each
    /// row the group's heads have read, the pair leaving the window is offered, as a step would.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Prefill(StepContext ctx)
    {
        ctx.RotateAll(1f);
        int units = ctx.SegmentCount * (_sparse > 0 ? KvHeads : Heads);
        ctx.EnsureScratch(units * UnitFloats);
        _ctx = ctx;
        ctx.Run(this, units, UnitWork * ctx.Count / Math.Max(1, ctx.SegmentCount));
        _ctx = null;
        for (int b = 0; b < ctx.Count; b++)
            Remember(ctx, b, ctx.Position(b));
    }

    private void Remember(StepContext ctx, int b, long pos)
    {
        var state = (LolcatsState)ctx.Sequences[b].Layers[ctx.Layer];
        for (int h = 0; h < KvHeads; h++)
        {
            Buffer.MemoryCopy(ctx.KRotated(b) + h * HeadDim, state.Key(h, pos), HeadDim * sizeof(float), HeadDim * sizeof(float));
            Buffer.MemoryCopy(ctx.V(b) + h * HeadDim, state.Value(h, pos), HeadDim * sizeof(float), HeadDim * sizeof(float));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        var ctx = _ctx!;
        for (int unit = start; unit < end; unit++)
        {
            float* scratch = ctx.Scratch.Pointer + unit * UnitFloats;
            if (!ctx.Prefill)
            {
                int b = unit / Heads;
                Row(ctx, b, unit % Heads, b, ctx.Sequences[b].Position, scratch);
                continue;
            }

            if (_sparse > 0)
            {
                SparseSegment(ctx, unit / KvHeads, unit % KvHeads, scratch);
                continue;
            }

            int segment = unit / Heads, first = ctx.SegmentStart[segment];
            long origin = ctx.Sequences[first].Position;
            for (int b = first; b < first + ctx.SegmentLength[segment]; b++)
                Row(ctx, b, unit % Heads, first, origin, scratch);
        }
    }

    /// <summary>Sparse-cache prefill of one (segment, KV head): rows in order, the group's heads, then the offer of the pair
    /// leaving the window after that row (from the segment's rows, or the ring for earlier positions).</summary>
    private void SparseSegment(StepContext ctx, int segment, int kvHead, float* scratch)
    {
        int first = ctx.SegmentStart[segment], d = HeadDim;
        var state = (LolcatsState)ctx.Sequences[first].Layers[ctx.Layer];
        long origin = ctx.Sequences[first].Position;
        for (int b = first; b < first + ctx.SegmentLength[segment]; b++)
        {
            for (int h = kvHead * Group; h < (kvHead + 1) * Group; h++)
                Row(ctx, b, h, first, origin, scratch);
            long leaving = origin + (b - first) - (_window - 1);
            if (leaving < 0)
                continue;
            bool inSegment = leaving >= origin;
            int row = first + (int)(leaving - origin);
            Offer(state, kvHead, leaving, inSegment ? ctx.KRotated(row) + kvHead * d : state.Key(kvHead, leaving),
                inSegment ? ctx.V(row) + kvHead * d : state.Value(kvHead, leaving), scratch);
        }
    }

    /// <summary>
    /// Offers pair <paramref name="pair"/> (its post-RoPE key and value) of <paramref name="kvHead"/> to the slots with its
    /// recall error, the mean over the group's query heads of <see cref="LolcatsSparseRule.RecallError"/> against each
    /// head's state as it is now, then folds the loser — the pair itself when it is not kept, else the pair it
    /// replaces — into every head of the group (<see cref="SparseCacheRule.Offer"/>, docs/METHODS.md §1.7).
    /// </summary>
    private void Offer(LolcatsState state, int kvHead, long pair, float* key, float* value, float* scratch)
    {
        int d = HeadDim, n = _sparse, stateFloats = _features * (d + 1);
        float* phi = scratch + _layout.Phi, pre = scratch + _layout.Pre, read = scratch + _layout.Read;
        float sum = 0;
        for (int h = kvHead * Group; h < (kvHead + 1) * Group; h++)
        {
            FeatureMap(key, _mapK, _biasK[h], h, phi, pre);
            sum += LolcatsSparseRule.RecallError(new ReadOnlySpan<float>(phi, _features), new ReadOnlySpan<float>(state.LinearState(h), stateFloats),
                new ReadOnlySpan<float>(value, d), new Span<float>(read, d + 1));
        }

        var index = state.SparseIndex.AsSpan(kvHead * n, n);
        bool full = !index.Contains(-1L);
        int slot = SparseCacheRule.Offer(index, state.SparseScores.AsSpan((long)kvHead * n, n), pair, sum / Group);
        if (slot < 0)
        {
            FoldPair(state, kvHead, key, value, phi, pre);
            return;
        }

        if (full)
            FoldPair(state, kvHead, state.SparseKey(kvHead, slot), state.SparseValue(kvHead, slot), phi, pre);
        Buffer.MemoryCopy(key, state.SparseKey(kvHead, slot), d * sizeof(float), d * sizeof(float));
        Buffer.MemoryCopy(value, state.SparseValue(kvHead, slot), d * sizeof(float), d * sizeof(float));
    }

    /// <summary>Folds a pair into the linear state of every query head of <paramref name="kvHead"/>.</summary>
    private void FoldPair(LolcatsState state, int kvHead, float* key, float* value, float* phi, float* pre)
    {
        int d = HeadDim;
        for (int h = kvHead * Group; h < (kvHead + 1) * Group; h++)
        {
            FeatureMap(key, _mapK, _biasK[h], h, phi, pre);
            LolcatsSparseRule.Fold(new ReadOnlySpan<float>(phi, _features), new Span<float>(state.LinearState(h), _features * (d + 1)),
                new ReadOnlySpan<float>(value, d));
        }
    }

    /// <summary>Row <paramref name="b"/>, query head <paramref name="h"/>: positions from <paramref name="origin"/> on are
    /// rows of the batch starting at row <paramref name="first"/>; earlier ones are in the state's ring.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Row(StepContext ctx, int b, int h, int first, long origin, float* scratch)
    {
        int d = HeadDim, kvHead = h / Group;
        float scale = 1f / MathF.Sqrt(d);
        var state = (LolcatsState)ctx.Sequences[b].Layers[ctx.Layer];
        long pos = origin + (b - first);
        float* scores = scratch + _layout.Scores, window = scratch + _layout.Window, phi = scratch + _layout.Phi, pre = scratch + _layout.Pre;
        float* s = state.LinearState(h);
        float* Key(long p) => p >= origin ? ctx.KRotated(first + (int)(p - origin)) + kvHead * d : state.Key(kvHead, p);
        float* Value(long p) => p >= origin ? ctx.V(first + (int)(p - origin)) + kvHead * d : state.Value(kvHead, p);

        // 1. Fold the keys that leave the window at this position into S (reference: featurize on eviction).
        long foldFrom = 0, foldTo = 0;
        if (_sparse > 0)
        {
            // With a sparse cache pairs are folded when they lose an offer (Offer), not here.
        }
        else if (_options.Shape == LolcatsWindowShape.Sw)
        {
            if (pos >= _window)
                (foldFrom, foldTo) = (pos - _window, pos - _window + 1);
        }
        else if (pos % _window == 0 && pos >= 2L * _window)
        {
            (foldFrom, foldTo) = (pos - 2L * _window, pos - _window);
        }

        for (long p = foldFrom; p < foldTo; p++)
        {
            FeatureMap(Key(p), _mapK, _biasK[h], h, phi, pre);
            float* v = Value(p);
            for (int f = 0; f < _features; f++)
            {
                float* row = s + (long)f * (d + 1);
                VectorOps.Axpy(phi[f], v, row, d);
                row[d] += phi[f];
            }
        }

        // 2. Window: softmax scores with the stabilizer over the window only.
        long from = _options.Shape == LolcatsWindowShape.Sw
            ? Math.Max(0, pos - _window + 1)
            : Math.Max(0, (pos / _window - 1) * _window);
        float* q = ctx.QRotated(b) + h * d;
        int n = 0;
        for (long p = from; p <= pos; p++)
            scores[n++] = VectorOps.Dot(q, Key(p), d) * scale;
        for (int slot = 0; slot < _sparse; slot++)
            if (state.SparseIndex[kvHead * _sparse + slot] >= 0)
                scores[n++] = VectorOps.Dot(q, state.SparseKey(kvHead, slot), d) * scale;
        var (_, sum) = VectorOps.ExpShifted(scores, n); // the stabilizer over the window and the slots
        new Span<float>(window, d).Clear();
        int i = 0;
        for (long p = from; p <= pos; p++)
            VectorOps.Axpy(scores[i++], Value(p), window, d);
        for (int slot = 0; slot < _sparse; slot++)
            if (state.SparseIndex[kvHead * _sparse + slot] >= 0)
                VectorOps.Axpy(scores[i++], state.SparseValue(kvHead, slot), window, d);

        // 3. Linear: φq · S, whose last column is the denominator.
        FeatureMap(q, _mapQ, _biasQ[h], h, phi, pre);
        float* output = ctx.Output(b) + h * d;
        float gamma = _gamma[h], lambda = _lambda[h];
        for (int j = 0; j < d; j++)
            output[j] = gamma * window[j];
        float denominator = gamma * sum;
        VectorOps.Prefetch((byte*)s, StatePrefetchBytes);
        for (int f = 0; f < _features; f++)
        {
            float* row = s + (long)f * (d + 1);
            VectorOps.Prefetch((byte*)row + StatePrefetchBytes, (d + 1) * sizeof(float));
            VectorOps.Axpy(lambda * phi[f], row, output, d);
            denominator += lambda * phi[f] * row[d];
        }

        float inverse = 1f / denominator;
        for (int j = 0; j < d; j++)
            output[j] *= inverse;
    }

    /// <summary>φ(x) for head <paramref name="h"/>: y = xW_h (+ b_h), then Hedgehog's two clamped softmaxes or T2R's ReLU.</summary>
    private void FeatureMap(float* x, float[] map, float bias, int h, float* phi, float* pre)
    {
        int d = HeadDim, m = _featureDim;
        var y = new Span<float>(pre, m);
        y.Fill(bias);
        fixed (float* w = map)
        {
            float* wh = w + (long)h * d * m;
            for (int j = 0; j < d; j++)
                VectorOps.Axpy(x[j], wh + (long)j * m, pre, m); // row j of W_h [D, d']
        }

        if (_options.FeatureMap == LolcatsFeatureMapKind.T2r)
        {
            for (int f = 0; f < m; f++)
                phi[f] = MathF.Max(MathF.Max(pre[f], 0f), _eps);
            return;
        }

        // softmax(y) ⊕ softmax(−y), each over the d' features, clamped below at eps.
        for (int f = 0; f < m; f++)
        {
            phi[f] = pre[f];
            phi[m + f] = -pre[f];
        }

        VectorOps.Softmax(phi, m);
        VectorOps.Softmax(phi + m, m);
        for (int f = 0; f < 2 * m; f++)
            phi[f] = MathF.Max(phi[f], _eps);
    }

    public override void Import(LayerState state, ILayerCache? cache, int row, long seen)
    {
        var ls = (LolcatsState)state;
        var lolcats = CacheImport.Expect<LolcatsLayerCache>(cache, "a LoLCATs cache");
        if (lolcats.Context() is not { } context)
            return;
        using var scope = NewDisposeScope();
        int d = HeadDim;
        CacheImport.WindowEntries(context, row, seen, seen - _capacity, KvHeads, d, (h, p, k, v) =>
        {
            k.CopyTo(new Span<float>(ls.Key(h, p), d));
            v.CopyTo(new Span<float>(ls.Value(h, p), d));
        });
        if (lolcats.State is null)
            throw CacheImport.Error("the LoLCATs cache holds a window but no linear state");
        CacheImport.State(lolcats.State, row, new long[] { Heads, _features, d + 1 }, ls.Linear, "linear state");
        if (_sparse > 0 && lolcats.Sparse is { Keys: not null } sparse)
        {
            if (sparse.Capacity != _sparse)
                throw CacheImport.Error($"sparse cache of {sparse.Capacity} slots, expected {_sparse}");
            CacheImport.Floats(sparse.Keys, row).CopyTo(ls.SparseKeys.AsSpan(0, (int)ls.SparseKeys.Length));
            CacheImport.Floats(sparse.Values!, row).CopyTo(ls.SparseValues.AsSpan(0, (int)ls.SparseValues.Length));
            CacheImport.Floats(sparse.Score!, row).CopyTo(ls.SparseScores.AsSpan(0, (int)ls.SparseScores.Length));
            sparse.Index![row].contiguous().data<long>().ToArray().CopyTo(ls.SparseIndex, 0);
        }
    }
}
