using System.Runtime.CompilerServices;
using Linearize.Caching;
using Linearize.Inference.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference.Mixers;

/// <summary>
/// A sliding-window softmax branch over a fixed ring of keys/values (the <c>swa</c> baseline, with optional sinks) and,
/// for Liger layers, the gated recurrent branch beside it: <c>o = α·window + β·recurrent</c>. Work units are
/// (sequence, query head); the window's <c>window − 1</c> past keys come from the ring and the last is the current
/// token's, so the state never grows. The engine twin of <c>SlidingWindowAttention</c> / <c>LigerAttention</c>.
/// </summary>
internal sealed unsafe class WindowMixer : EngineMixer
{
    private readonly int _window;
    private readonly int _sinks;
    private readonly float _alpha;
    private readonly float _beta;
    private readonly RecurrentBranch? _recurrent;
    private readonly ScratchLayout _layout;
    private StepContext? _ctx;
    private Phase _phase;

    private enum Phase
    {
        Step,
        PrefillWindow,
        PrefillRecurrent,
    }

    public WindowMixer(int heads, int kvHeads, int headDim, int window, int sinks, double alpha, double beta, RecurrentBranch? recurrent)
        : base(heads, kvHeads, headDim)
    {
        _window = window;
        _sinks = sinks;
        _alpha = (float)alpha;
        _beta = (float)beta;
        _recurrent = recurrent;
        _layout = new ScratchLayout(window + sinks, headDim, recurrent?.ScratchFloats ?? 0);
    }

    /// <summary>Where each region of one (row, head)'s scratch starts, in floats from its base: the window scores
    /// [window + sinks], the window read-out [D], the recurrent read-out [D], then the recurrent branch's own scratch.</summary>
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
        new WindowState(KvHeads, HeadDim, Ring, _sinks, _recurrent?.StateFloats ?? 0, _recurrent?.SlotValueFloats ?? 0);

    /// <summary>Scratch per unit (<see cref="ScratchLayout"/>).</summary>
    private long UnitFloats => _layout.Floats;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Step(StepContext ctx)
    {
        ctx.RotateAll(1f / MathF.Sqrt(HeadDim));
        int units = ctx.Count * Heads;
        ctx.EnsureScratch(units * UnitFloats);
        _ctx = ctx;
        ctx.Run(this, units, UnitWork);
        _ctx = null;

        // Only now (every head has read the ring) does the current token enter it.
        for (int b = 0; b < ctx.Count; b++)
            Remember(ctx, b, ctx.Sequences[b].Position);
    }

    /// <summary>Multiply-adds of one (row, head) unit of a step, roughly: window scores and read-out, recurrent update and read.</summary>
    private long UnitWork => 2L * (_window + _sinks) * HeadDim + (_recurrent is null ? 0 : 2L * HeadDim * (HeadDim + 1));

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
            Remember(ctx, b, ctx.Position(b));
    }

    /// <summary>Row <paramref name="b"/>'s key and value enter the ring (and the sinks, for the first positions).</summary>
    private void Remember(StepContext ctx, int b, long pos)
    {
        var state = (WindowState)ctx.Sequences[b].Layers[ctx.Layer];
        for (int h = 0; h < KvHeads; h++)
        {
            float* key = ctx.KRotated(b) + h * HeadDim, value = ctx.V(b) + h * HeadDim;
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

    public override void Execute(int start, int end)
    {
        switch (_phase)
        {
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
                for (int j = 0; j < d; j++)
                    output[j] = output[j] + recurrent[j] * _beta;
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
            VectorOps.Softmax(scores, n);

            new Span<float>(window, d).Clear();
            int i = 0;
            for (int p = 0; p < sinkCount; p++)
                VectorOps.Axpy(scores[i++], state.SinkValue(kvHead, p), window, d);
            for (long p = ringFrom; p < pos; p++)
                VectorOps.Axpy(scores[i++], state.RingValue(kvHead, p), window, d);
            VectorOps.Axpy(scores[i], currentValue, window, d);

            float* output = ctx.Output(b) + h * d;
            if (_recurrent is null)
            {
                Buffer.MemoryCopy(window, output, d * sizeof(float), d * sizeof(float));
                continue;
            }

            _recurrent.Step(ctx, b, h, state, branch, recurrent);
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
        var (mainShape, slotShape) = _recurrent.StateShapes;
        CacheImport.State(linear.State, row, mainShape, ws.Recurrent, "recurrent state");
        if (slotShape is not null)
            CacheImport.State(linear.SlotValueState, row, slotShape, ws.SlotValues, "slot value state");
    }
}
