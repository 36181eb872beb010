using System.Runtime.CompilerServices;
using Linearize.Caching;
using Linearize.Inference.Kernels;
using Linearize.LinearAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference.Mixers;

/// <summary>
/// A sliding-window softmax branch over a fixed ring of keys/values (the <c>swa</c> baseline, with optional sinks) and,
/// for Liger layers, the gated recurrent branch beside it: <c>o = α·window + β·recurrent</c>. Work units are
/// (sequence, query head); the window's <c>window − 1</c> past keys come from the ring and the last is the current
/// token's, so the state never grows. The engine twin of <c>SlidingWindowAttention</c> / <c>LigerAttention</c>. With a
/// sparse cache (LoLA, docs/METHODS.md §1.7) the window's softmax also covers up to N evicted pairs per KV head; each
/// step scores the pair it writes (its recall error) and offers the pair leaving the ring to the slots
/// (<see cref="SparseCacheRule"/>).
/// </summary>
internal sealed unsafe class WindowMixer : EngineMixer
{
    private readonly int _window;
    private readonly int _sinks;
    private readonly float _alpha;
    private readonly float _beta;
    private readonly RecurrentBranch? _recurrent;
    private readonly int _sparse;
    private readonly ScratchLayout _layout;
    private float[] _rowScores = Array.Empty<float>();
    private float[] _headScores = Array.Empty<float>(); // delta rule: each query head's error, averaged per KV head
    private readonly bool _meanOverGroup;
    private StepContext? _ctx;
    private Phase _phase;

    private enum Phase
    {
        Step,
        PrefillWindow,
        PrefillRecurrent,
        PrefillSparseWindow,
    }

    public WindowMixer(int heads, int kvHeads, int headDim, int window, int sinks, double alpha, double beta, RecurrentBranch? recurrent,
        int sparse = 0)
        : base(heads, kvHeads, headDim)
    {
        if (sparse > 0 && (recurrent is null || sinks > 0 || window < 2))
            throw new ArgumentException("a sparse cache needs a recurrent branch, no sinks and a window of at least 2 keys");
        _sparse = sparse;
        _window = window;
        _sinks = sinks;
        _alpha = (float)alpha;
        _beta = (float)beta;
        _recurrent = recurrent;
        // A gated family's query heads share one state per KV head; the delta rule's β and a learned gate differ per
        // query head, so their error is the mean over the group (docs/METHODS.md §1.7).
        _meanOverGroup = sparse > 0 && (recurrent!.IsDeltaRule || recurrent.HasLearnedGate);
        _layout = new ScratchLayout(window + sinks + sparse, headDim, recurrent?.ScratchFloats ?? 0);
    }

    /// <summary>Where each region of one (row, head)'s scratch starts, in floats from its base: the window scores
    /// [window + sinks + sparse slots], the window read-out [D], the recurrent read-out [D], then the recurrent branch's own scratch.</summary>
    private readonly record struct ScratchLayout
    {
        public ScratchLayout(int scores, int d, int branchFloats)
        {
            (Scores, Window, Recurrent, Branch) = (0, scores, scores + d, scores + 2 * d);
            Floats = scores + 2L * d + branchFloats + 16;
        }

        public int Scores { get; }

        public int Window { get; }

        public int Recurrent { get; }

        public int Branch { get; }

        public long Floats { get; }
    }

    private int Ring => _window - 1;

    public override LayerState CreateState() =>
        new WindowState(KvHeads, HeadDim, Ring, _sinks, _recurrent?.StateFloats ?? 0, _recurrent?.SlotValueFloats ?? 0, _sparse);

    /// <summary>Room for each row's recall error per KV head (sparse cache only).</summary>
    private void EnsureRowScores(int rows)
    {
        if (_sparse > 0 && _rowScores.Length < rows * KvHeads)
            _rowScores = new float[rows * KvHeads];
        if (_meanOverGroup && _headScores.Length < rows * Heads)
            _headScores = new float[rows * Heads];
    }

    /// <summary>Row <paramref name="b"/>'s error of query head <paramref name="h"/>: the KV head's own (gated families, first
    /// head of the group), or one term of the group's mean (delta rule, <see cref="AverageHeadScores"/>).</summary>
    private void RecordScore(StepContext ctx, int b, int h, WindowState state, float* branch)
    {
        if (_meanOverGroup)
            _headScores[b * Heads + h] = _recurrent!.RecallError(ctx, b, h, state, branch);
        else if (h % Group == 0)
            _rowScores[b * KvHeads + h / Group] = _recurrent!.RecallError(ctx, b, h, state, branch);
    }

    /// <summary>Delta rule or learned gate: each row's error per KV head, the mean of its query heads' (summed in head order, then divided).</summary>
    private void AverageHeadScores(int rows)
    {
        if (!_meanOverGroup)
            return;
        for (int b = 0; b < rows; b++)
            for (int kv = 0; kv < KvHeads; kv++)
            {
                float sum = 0;
                for (int h = kv * Group; h < (kv + 1) * Group; h++)
                    sum += _headScores[b * Heads + h];
                _rowScores[b * KvHeads + kv] = sum / Group;
            }
    }

    /// <summary>Scratch per unit (<see cref="ScratchLayout"/>).</summary>
    private long UnitFloats => _layout.Floats;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Step(StepContext ctx)
    {
        ctx.RotateAll(1f / MathF.Sqrt(HeadDim));
        int units = ctx.Count * Heads;
        ctx.EnsureScratch(units * UnitFloats);
        EnsureRowScores(ctx.Count);
        _ctx = ctx;
        ctx.Run(this, units, UnitWork, grain: StepGrain(ctx, units));
        _ctx = null;
        AverageHeadScores(ctx.Count);

        // Only now (every head has read the ring and the slots) does the current token enter the ring, and the pair it
        // pushes out go to the sparse cache.
        for (int b = 0; b < ctx.Count; b++)
            Remember(ctx, b, ctx.Sequences[b].Position, offer: true);
    }

    /// <summary>Multiply-adds of one (row, head) unit of a step, roughly: window scores and read-out, recurrent update and read.</summary>
    private long UnitWork => 2L * (_window + _sinks + _sparse) * HeadDim + (_recurrent is null ? 0 : 2L * HeadDim * (HeadDim + 1));

    private void Copy(float* from, float* to) => Buffer.MemoryCopy(from, to, HeadDim * sizeof(float), HeadDim * sizeof(float));

    /// <summary>
    /// Prefill in two passes: the window softmax of every (row, head) at once — a row's keys are the state's (positions
    /// before the segment) or the segment's own rows — then the recurrent branch per (segment, head), rows in order,
    /// with the very arithmetic of <see cref="Step"/> (<c>o = α·window + β·recurrent</c>, rounded the same way), so the
    /// state ends bit for bit where stepping would leave it. Finally the segment's last keys enter the ring.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Prefill(StepContext ctx)
    {
        ctx.RotateAll(1f / MathF.Sqrt(HeadDim));
        int rows = ctx.Count, d = HeadDim;
        ctx.EnsureScratch(Math.Max(rows, ctx.SegmentCount) * (long)Heads * UnitFloats);
        _ctx = ctx;
        if (_sparse > 0)
        {
            // The slots change row by row with errors the recurrence computes, so: the recurrence first (it also
            // scores each row), then per (segment, KV head) the window and the slots with rows in order.
            EnsureRowScores(rows);
            _phase = Phase.PrefillRecurrent;
            ctx.Run(this, ctx.SegmentCount * Heads, 2L * ctx.Count / Math.Max(1, ctx.SegmentCount) * d * (d + 1));
            AverageHeadScores(rows);
            _phase = Phase.PrefillSparseWindow;
            ctx.Run(this, ctx.SegmentCount * KvHeads, 2L * ctx.Count / Math.Max(1, ctx.SegmentCount) * Group * (_window + _sparse) * d);
            _phase = Phase.Step;
            _ctx = null;
            for (int b = 0; b < rows; b++)
                Remember(ctx, b, ctx.Position(b), offer: false);
            return;
        }

        _phase = Phase.PrefillWindow;
        ctx.Run(this, rows * Heads, 2L * (_window + _sinks) * d);
        if (_recurrent is not null)
        {
            _phase = Phase.PrefillRecurrent;
            ctx.Run(this, ctx.SegmentCount * Heads, 2L * ctx.Count / Math.Max(1, ctx.SegmentCount) * d * (d + 1));
        }

        _phase = Phase.Step;
        _ctx = null;
        for (int b = 0; b < rows; b++)
            Remember(ctx, b, ctx.Position(b), offer: false);
    }

    /// <summary>Row <paramref name="b"/>'s key and value enter the ring (and the sinks, for the first positions); with a
    /// sparse cache its recall error enters the ring too, and when <paramref name="offer"/> the pair it overwrites
    /// (position <c>pos − (window − 1)</c>, which the query at <c>pos</c> was the last to see) is offered to the slots.</summary>
    private void Remember(StepContext ctx, int b, long pos, bool offer)
    {
        var state = (WindowState)ctx.Sequences[b].Layers[ctx.Layer];
        for (int h = 0; h < KvHeads; h++)
        {
            float* key = ctx.KRotated(b) + h * HeadDim, value = ctx.V(b) + h * HeadDim;
            if (_sparse > 0)
            {
                if (offer && pos - Ring >= 0)
                    Offer(state, h, pos - Ring, state.RingKey(h, pos - Ring), state.RingValue(h, pos - Ring), *state.RingScore(h, pos - Ring));
                *state.RingScore(h, pos) = _rowScores[b * KvHeads + h];
            }

            if (Ring > 0)
            {
                Copy(key, state.RingKey(h, pos));
                Copy(value, state.RingValue(h, pos));
            }

            if (pos < _sinks)
            {
                Copy(key, state.SinkKey(h, pos));
                Copy(value, state.SinkValue(h, pos));
            }
        }
    }

    /// <summary>Offers pair <paramref name="pair"/> of KV head <paramref name="kvHead"/> to the slots (<see cref="SparseCacheRule.Offer"/>).</summary>
    private void Offer(WindowState state, int kvHead, long pair, float* key, float* value, float score)
    {
        int n = state.Sparse;
        int slot = SparseCacheRule.Offer(state.SparseIndex.AsSpan(kvHead * n, n), state.SparseScores.AsSpan((long)kvHead * n, n), pair, score);
        if (slot < 0)
            return;
        Copy(key, state.SparseKey(kvHead, slot));
        Copy(value, state.SparseValue(kvHead, slot));
    }

    /// <summary>Softmax weights over <paramref name="n"/> scores already holding the window's, extended by the filled
    /// slots of <paramref name="kvHead"/>; returns the new count.</summary>
    private int SparseScores(WindowState state, int kvHead, float* q, float* scores, int n)
    {
        for (int slot = 0; slot < _sparse; slot++)
            if (state.SparseIndex[kvHead * _sparse + slot] >= 0)
                scores[n++] = VectorOps.Dot(q, state.SparseKey(kvHead, slot), HeadDim);
        return n;
    }

    /// <summary>Adds the filled slots' values weighted from <paramref name="scores"/>[<paramref name="i"/>] on.</summary>
    private void SparseRead(WindowState state, int kvHead, float* scores, int i, float* window)
    {
        for (int slot = 0; slot < _sparse; slot++)
            if (state.SparseIndex[kvHead * _sparse + slot] >= 0)
                VectorOps.Axpy(scores[i++], state.SparseValue(kvHead, slot), window, HeadDim);
    }

    public override void Execute(int start, int end)
    {
        switch (_phase)
        {
            case Phase.PrefillSparseWindow:
                SparseWindowUnits(start, end);
                break;
            case Phase.Step:
                StepUnits(start, end);
                break;
            case Phase.PrefillWindow:
                WindowUnits(start, end);
                break;
            default:
                RecurrentUnits(start, end);
                break;
        }
    }

    /// <summary>Prefill pass 1, units (row, query head): the window softmax, scaled by α when a recurrent branch follows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WindowUnits(int start, int end)
    {
        var ctx = _ctx!;
        int d = HeadDim;
        for (int unit = start; unit < end; unit++)
        {
            int b = unit / Heads, h = unit % Heads, kvHead = h / Group;
            var state = (WindowState)ctx.Sequences[b].Layers[ctx.Layer];
            int first = ctx.SegmentStart[ctx.RowSegment[b]];
            long origin = ctx.Sequences[b].Position, pos = origin + (b - first);
            float* scratch = ctx.Scratch.Pointer + unit * UnitFloats;
            float* scores = scratch + _layout.Scores, window = scratch + _layout.Window;
            float* q = ctx.QRotated(b) + h * d;
            int sinkCount = (int)Math.Min(_sinks, pos);
            long ringFrom = Math.Max(Math.Max(0, pos - Ring), Math.Min(pos, _sinks));
            int n = 0;
            for (int p = 0; p < sinkCount; p++)
                scores[n++] = VectorOps.Dot(q, p >= origin ? ctx.KRotated(first + (int)(p - origin)) + kvHead * d : state.SinkKey(kvHead, p), d);
            for (long p = ringFrom; p < pos; p++)
                scores[n++] = VectorOps.Dot(q, p >= origin ? ctx.KRotated(first + (int)(p - origin)) + kvHead * d : state.RingKey(kvHead, p), d);
            scores[n++] = VectorOps.Dot(q, ctx.KRotated(b) + kvHead * d, d);
            VectorOps.Softmax(scores, n);

            new Span<float>(window, d).Clear();
            int i = 0;
            for (int p = 0; p < sinkCount; p++)
                VectorOps.Axpy(scores[i++], p >= origin ? ctx.V(first + (int)(p - origin)) + kvHead * d : state.SinkValue(kvHead, p), window, d);
            for (long p = ringFrom; p < pos; p++)
                VectorOps.Axpy(scores[i++], p >= origin ? ctx.V(first + (int)(p - origin)) + kvHead * d : state.RingValue(kvHead, p), window, d);
            VectorOps.Axpy(scores[i], ctx.V(b) + kvHead * d, window, d);

            float* output = ctx.Output(b) + h * d;
            if (_recurrent is null)
            {
                Buffer.MemoryCopy(window, output, d * sizeof(float), d * sizeof(float));
                continue;
            }

            for (int j = 0; j < d; j++)
                output[j] = window[j] * _alpha;
        }
    }

    /// <summary>Prefill pass 2, units (segment, query head): the recurrent branch over the segment's rows in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RecurrentUnits(int start, int end)
    {
        var ctx = _ctx!;
        int d = HeadDim;
        for (int unit = start; unit < end; unit++)
        {
            int segment = unit / Heads, h = unit % Heads;
            int first = ctx.SegmentStart[segment], count = ctx.SegmentLength[segment];
            var state = (WindowState)ctx.Sequences[first].Layers[ctx.Layer];
            float* scratch = ctx.Scratch.Pointer + unit * UnitFloats;
            float* recurrent = scratch + _layout.Recurrent, branch = scratch + _layout.Branch;
            for (int b = first; b < first + count; b++)
            {
                _recurrent!.Step(ctx, b, h, state, branch, recurrent);
                float* output = ctx.Output(b) + h * d;
                if (_sparse == 0)
                {
                    for (int j = 0; j < d; j++)
                        output[j] = output[j] + recurrent[j] * _beta;
                    continue;
                }

                // The window pass adds α·window afterwards: the same sum as a step's (addition commutes exactly).
                for (int j = 0; j < d; j++)
                    output[j] = recurrent[j] * _beta;
                RecordScore(ctx, b, h, state, branch);
            }
        }
    }

    /// <summary>
    /// Sparse-cache prefill, units (segment, KV head), rows in order as steps would take them: each query head of the
    /// group attends the window (the state's ring or the segment's rows) and the slots as they are, adding α·window to
    /// the β·recurrent already in the output; then the pair leaving the window after this row is offered to the slots.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SparseWindowUnits(int start, int end)
    {
        var ctx = _ctx!;
        int d = HeadDim;
        for (int unit = start; unit < end; unit++)
        {
            int segment = unit / KvHeads, kvHead = unit % KvHeads;
            int first = ctx.SegmentStart[segment], count = ctx.SegmentLength[segment];
            var state = (WindowState)ctx.Sequences[first].Layers[ctx.Layer];
            long origin = ctx.Sequences[first].Position;
            float* scratch = ctx.Scratch.Pointer + unit * UnitFloats;
            float* scores = scratch + _layout.Scores, window = scratch + _layout.Window;
            float* Key(long p) => p >= origin ? ctx.KRotated(first + (int)(p - origin)) + kvHead * d : state.RingKey(kvHead, p);
            float* Value(long p) => p >= origin ? ctx.V(first + (int)(p - origin)) + kvHead * d : state.RingValue(kvHead, p);
            for (int b = first; b < first + count; b++)
            {
                long pos = origin + (b - first), ringFrom = Math.Max(0, pos - Ring);
                for (int h = kvHead * Group; h < (kvHead + 1) * Group; h++)
                {
                    float* q = ctx.QRotated(b) + h * d;
                    int n = 0;
                    for (long p = ringFrom; p < pos; p++)
                        scores[n++] = VectorOps.Dot(q, Key(p), d);
                    scores[n++] = VectorOps.Dot(q, ctx.KRotated(b) + kvHead * d, d);
                    n = SparseScores(state, kvHead, q, scores, n);
                    VectorOps.Softmax(scores, n);

                    new Span<float>(window, d).Clear();
                    int i = 0;
                    for (long p = ringFrom; p < pos; p++)
                        VectorOps.Axpy(scores[i++], Value(p), window, d);
                    VectorOps.Axpy(scores[i++], ctx.V(b) + kvHead * d, window, d);
                    SparseRead(state, kvHead, scores, i, window);

                    float* output = ctx.Output(b) + h * d;
                    for (int j = 0; j < d; j++)
                        output[j] = window[j] * _alpha + output[j];
                }

                long leaving = pos - Ring;
                if (leaving >= 0)
                    Offer(state, kvHead, leaving, Key(leaving), Value(leaving),
                        leaving >= origin ? _rowScores[(first + (int)(leaving - origin)) * KvHeads + kvHead] : *state.RingScore(kvHead, leaving));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void StepUnits(int start, int end)
    {
        var ctx = _ctx!;
        int d = HeadDim;
        for (int unit = start; unit < end; unit++)
        {
            int b = unit / Heads, h = unit % Heads, kvHead = h / Group;
            var state = (WindowState)ctx.Sequences[b].Layers[ctx.Layer];
            long pos = ctx.Sequences[b].Position;
            float* scratch = ctx.Scratch.Pointer + unit * UnitFloats;
            float* scores = scratch + _layout.Scores, window = scratch + _layout.Window, recurrent = scratch + _layout.Recurrent,
                branch = scratch + _layout.Branch;
            float* q = ctx.QRotated(b) + h * d;

            // Visible: the sinks (positions < sinks), the ring (the window − 1 positions before this one, minus any
            // sink already counted), and the current token.
            int sinkCount = (int)Math.Min(_sinks, pos);
            long ringFrom = Math.Max(Math.Max(0, pos - Ring), Math.Min(pos, _sinks));
            int n = 0;
            for (int p = 0; p < sinkCount; p++)
                scores[n++] = VectorOps.Dot(q, state.SinkKey(kvHead, p), d);
            for (long p = ringFrom; p < pos; p++)
                scores[n++] = VectorOps.Dot(q, state.RingKey(kvHead, p), d);
            float* currentKey = ctx.KRotated(b) + kvHead * d, currentValue = ctx.V(b) + kvHead * d;
            scores[n++] = VectorOps.Dot(q, currentKey, d);
            n = SparseScores(state, kvHead, q, scores, n);
            VectorOps.Softmax(scores, n);

            new Span<float>(window, d).Clear();
            int i = 0;
            for (int p = 0; p < sinkCount; p++)
                VectorOps.Axpy(scores[i++], state.SinkValue(kvHead, p), window, d);
            for (long p = ringFrom; p < pos; p++)
                VectorOps.Axpy(scores[i++], state.RingValue(kvHead, p), window, d);
            VectorOps.Axpy(scores[i++], currentValue, window, d);
            SparseRead(state, kvHead, scores, i, window);

            float* output = ctx.Output(b) + h * d;
            if (_recurrent is null)
            {
                Buffer.MemoryCopy(window, output, d * sizeof(float), d * sizeof(float));
                continue;
            }

            _recurrent.Step(ctx, b, h, state, branch, recurrent);
            if (_sparse > 0)
                RecordScore(ctx, b, h, state, branch);
            for (int j = 0; j < d; j++)
                output[j] = window[j] * _alpha + recurrent[j] * _beta;
        }
    }

    public override void Import(LayerState state, ILayerCache? cache, int row, long seen)
    {
        var ws = (WindowState)state;
        var linear = CacheImport.Expect<LinearLayerCache>(cache, "a linear-layer cache");
        using var scope = NewDisposeScope();
        int d = HeadDim;
        if (linear.Window.Context() is { } context)
        {
            CacheImport.WindowEntries(context, row, seen, 0, KvHeads, d, (h, p, k, v) =>
            {
                if (p < _sinks)
                {
                    k.CopyTo(new Span<float>(ws.SinkKey(h, p), d));
                    v.CopyTo(new Span<float>(ws.SinkValue(h, p), d));
                }

                if (Ring > 0 && p >= seen - Ring)
                {
                    k.CopyTo(new Span<float>(ws.RingKey(h, p), d));
                    v.CopyTo(new Span<float>(ws.RingValue(h, p), d));
                }
            });
        }

        if (_recurrent is null)
            return;
        if (_sparse > 0 && linear.Sparse is { Keys: not null } sparse)
        {
            // Same layout both sides: N slots per KV head, ring slot = position mod (window − 1).
            if (sparse.Capacity != _sparse || sparse.Ring != Ring)
                throw CacheImport.Error($"sparse cache of {sparse.Capacity} slots and ring {sparse.Ring}, expected {_sparse} and {Ring}");
            CacheImport.Floats(sparse.Keys, row).CopyTo(ws.SparseKeys.AsSpan(0, (int)ws.SparseKeys.Length));
            CacheImport.Floats(sparse.Values!, row).CopyTo(ws.SparseValues.AsSpan(0, (int)ws.SparseValues.Length));
            CacheImport.Floats(sparse.Score!, row).CopyTo(ws.SparseScores.AsSpan(0, (int)ws.SparseScores.Length));
            CacheImport.Floats(sparse.RingScore!, row).CopyTo(ws.RingScores.AsSpan(0, (int)ws.RingScores.Length));
            sparse.Index![row].contiguous().data<long>().ToArray().CopyTo(ws.SparseIndex, 0);
        }

        var (mainShape, slotShape) = _recurrent.StateShapes;
        CacheImport.State(linear.State, row, mainShape, ws.Recurrent, "recurrent state");
        if (slotShape is not null)
            CacheImport.State(linear.SlotValueState, row, slotShape, ws.SlotValues, "slot value state");
    }
}
