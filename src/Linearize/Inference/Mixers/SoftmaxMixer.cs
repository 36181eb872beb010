using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using Linearize.Caching;
using Linearize.Inference.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The teacher's grouped-query softmax attention over a growing KV cache (optionally Mistral's sliding window).
/// Work units are (sequence, KV head, slice of positions): each unit streams its keys and values once for all the
/// query heads of its group — GQA without copying the cache — and keeps a partial softmax (max, sum, weighted values)
/// that <see cref="Merge"/> combines, flash-decoding style, so long contexts use every thread even with few KV heads.
/// </summary>
internal sealed unsafe class SoftmaxMixer : EngineMixer
{
    /// <summary>Positions below which one unit takes a whole (sequence, KV head) row.</summary>
    private const int MinSplitPositions = 256;

    private readonly int? _window;
    private StepContext? _ctx;
    private int _splits;
    private int _maxSplitLength;

    public SoftmaxMixer(int heads, int kvHeads, int headDim, int? slidingWindow) : base(heads, kvHeads, headDim) => _window = slidingWindow;

    public override LayerState CreateState() => new KvState(KvHeads, HeadDim);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Step(StepContext ctx)
    {
        ctx.RotateAll(1f / MathF.Sqrt(HeadDim));
        int longest = 0;
        for (int b = 0; b < ctx.Count; b++)
        {
            var seq = ctx.Sequences[b];
            var kv = (KvState)seq.Layers[ctx.Layer];
            int pos = kv.Length;
            kv.EnsureCapacity(pos + 1);
            for (int h = 0; h < KvHeads; h++)
            {
                new ReadOnlySpan<float>(ctx.KRotated(b) + h * HeadDim, HeadDim).CopyTo(new Span<float>(kv.Key(h, pos), HeadDim));
                new ReadOnlySpan<float>(ctx.V(b) + h * HeadDim, HeadDim).CopyTo(new Span<float>(kv.Value(h, pos), HeadDim));
            }

            kv.Length = pos + 1;
            longest = Math.Max(longest, Visible(kv.Length).Count);
        }

        // Enough units for every thread, but no slice shorter than MinSplitPositions.
        int rows = ctx.Count * KvHeads;
        if (ctx.BatchInvariant)
        {
            // Slices of a fixed span from each sequence's first visible position: how a sequence's softmax is cut and
            // merged depends on its own length only. A shorter sequence's extra slices are empty and skipped in Merge.
            _maxSplitLength = MinSplitPositions;
            _splits = Math.Max(1, (longest + MinSplitPositions - 1) / MinSplitPositions);
        }
        else
        {
            int wanted = (2 * ctx.Pool.Threads + rows - 1) / rows;
            _splits = Math.Max(1, Math.Min(wanted, longest / MinSplitPositions));
            _maxSplitLength = (longest + _splits - 1) / _splits;
        }

        int units = rows * _splits;
        ctx.EnsureScratch((long)units * UnitFloats);
        _ctx = ctx;
        ctx.Pool.Run(this, units);
        _ctx = null;
        Merge(ctx, units);
    }

    private (int Start, int Count) Visible(int length)
    {
        int start = _window is int w ? Math.Max(0, length - w) : 0;
        return (start, length - start);
    }

    /// <summary>Scratch per unit: scores [G, maxSplit], then per query head (max, sum, output [D]).</summary>
    private long UnitFloats => (long)Group * _maxSplitLength + (long)Group * (2 + HeadDim);

    private float* UnitScratch(StepContext ctx, int unit) => ctx.Scratch.Pointer + unit * UnitFloats;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        var ctx = _ctx!;
        int d = HeadDim, g = Group;
        for (int unit = start; unit < end; unit++)
        {
            int split = unit % _splits, row = unit / _splits;
            int b = row / KvHeads, kvHead = row % KvHeads;
            var kv = (KvState)ctx.Sequences[b].Layers[ctx.Layer];
            var (first, count) = Visible(kv.Length);
            int s0, s1;
            if (ctx.BatchInvariant)
            {
                s0 = Math.Min(first + count, first + split * _maxSplitLength);
                s1 = Math.Min(first + count, s0 + _maxSplitLength);
            }
            else
            {
                s0 = first + (int)((long)count * split / _splits);
                s1 = first + (int)((long)count * (split + 1) / _splits);
            }

            int n = s1 - s0;
            float* scratch = UnitScratch(ctx, unit);
            float* scores = scratch;
            float* partial = scratch + (long)g * _maxSplitLength; // per head: max, sum, out[D]
            float* q = ctx.QRotated(b) + (long)kvHead * g * d;     // the group's query heads are consecutive
            for (int s = 0; s < n; s++)
            {
                float* key = kv.Key(kvHead, s0 + s);
                for (int j = 0; j < g; j++)
                    scores[(long)j * _maxSplitLength + s] = VectorOps.Dot(q + j * d, key, d);
            }

            for (int j = 0; j < g; j++)
            {
                float* pj = partial + j * (2 + d);
                new Span<float>(pj, 2 + d).Clear();
                if (n == 0)
                {
                    pj[0] = float.NegativeInfinity;
                    continue;
                }

                (pj[0], pj[1]) = VectorOps.ExpShifted(scores + (long)j * _maxSplitLength, n);
            }

            for (int s = 0; s < n; s++)
            {
                float* value = kv.Value(kvHead, s0 + s);
                for (int j = 0; j < g; j++)
                    VectorOps.Axpy(scores[(long)j * _maxSplitLength + s], value, partial + j * (2 + d) + 2, d);
            }
        }
    }

    /// <summary>Combines the slices of each (sequence, query head): <c>o = Σ e^{m_i − M} o_i / Σ e^{m_i − M} l_i</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Merge(StepContext ctx, int units)
    {
        int d = HeadDim, g = Group;
        for (int row = 0; row < units / _splits; row++)
        {
            int b = row / KvHeads, kvHead = row % KvHeads;
            for (int j = 0; j < g; j++)
            {
                float* output = ctx.Output(b) + (long)(kvHead * g + j) * d;
                float max = float.NegativeInfinity;
                for (int split = 0; split < _splits; split++)
                    max = Math.Max(max, UnitScratch(ctx, row * _splits + split)[(long)g * _maxSplitLength + j * (2 + d)]);
                new Span<float>(output, d).Clear();
                float total = 0;
                for (int split = 0; split < _splits; split++)
                {
                    float* pj = UnitScratch(ctx, row * _splits + split) + (long)g * _maxSplitLength + j * (2 + d);
                    if (float.IsNegativeInfinity(pj[0]))
                        continue;
                    float w = MathF.Exp(pj[0] - max);
                    total += w * pj[1];
                    VectorOps.Axpy(w, pj + 2, output, d);
                }

                TensorPrimitives.Multiply(new ReadOnlySpan<float>(output, d), 1f / total, new Span<float>(output, d));
            }
        }
    }

    public override void Import(LayerState state, ILayerCache? cache, int row, long seen)
    {
        var kv = (KvState)state;
        if (cache is not KvCache torchCache)
            throw new LinearizeException($"layer cache hand-over: expected a KV cache, found {cache?.GetType().Name ?? "none"}");
        if (torchCache.Length != seen)
            throw new LinearizeException($"layer cache hand-over: the KV cache holds {torchCache.Length} positions, the model has seen {seen}");
        using var scope = NewDisposeScope();
        var (keys, values) = torchCache.Read();
        var k = keys[row].to(ScalarType.Float32).contiguous(); // [H_kv, S, D]
        var v = values[row].to(ScalarType.Float32).contiguous();
        int length = (int)seen;
        kv.EnsureCapacity(length);
        kv.Length = length;
        var ks = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(k.bytes);
        var vs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(v.bytes);
        for (int h = 0; h < KvHeads; h++)
        {
            int n = length * HeadDim;
            ks.Slice(h * n, n).CopyTo(new Span<float>(kv.Key(h, 0), n));
            vs.Slice(h * n, n).CopyTo(new Span<float>(kv.Value(h, 0), n));
        }
    }
}
