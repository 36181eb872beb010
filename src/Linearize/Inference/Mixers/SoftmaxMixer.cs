using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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

    /// <summary>Prefill: query rows per unit (each unit streams its keys once for all of them and their group's heads).</summary>
    private const int QueryTile = 16;

    /// <summary>Prefill: keys per block of the online softmax (a block of keys and values stays in L1); <see cref="BlockScores"/>
    /// holds one block in four 16-lane registers.</summary>
    private const int KeyBlock = 64;

    private readonly int? _window;
    private StepContext? _ctx;
    private bool _prefill;
    private int[] _unitSegment = Array.Empty<int>(), _unitKvHead = Array.Empty<int>(), _unitRow = Array.Empty<int>();
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
        ctx.Run(this, units, 2L * Group * HeadDim * ((longest + _splits - 1) / _splits));
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

    /// <summary>
    /// Prefill: every row's key and value are appended first, then units (segment, KV head, tile of
    /// <see cref="QueryTile"/> rows) run a causal online softmax over blocks of <see cref="KeyBlock"/> keys — the running
    /// max, sum and weighted values per (row, head), flash-attention style, so no T × T score matrix exists.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Prefill(StepContext ctx)
    {
        ctx.RotateAll(1f / MathF.Sqrt(HeadDim));
        int units = 0;
        long work = 0;
        for (int seg = 0; seg < ctx.SegmentCount; seg++)
        {
            int first = ctx.SegmentStart[seg], n = ctx.SegmentLength[seg];
            var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
            if (kv.Length != ctx.Sequences[first].Position)
                throw new InvalidOperationException($"KV cache holds {kv.Length} positions at position {ctx.Sequences[first].Position}");
            kv.EnsureCapacity(kv.Length + n);
            for (int i = 0; i < n; i++)
                for (int h = 0; h < KvHeads; h++)
                {
                    new ReadOnlySpan<float>(ctx.KRotated(first + i) + h * HeadDim, HeadDim).CopyTo(new Span<float>(kv.Key(h, kv.Length + i), HeadDim));
                    new ReadOnlySpan<float>(ctx.V(first + i) + h * HeadDim, HeadDim).CopyTo(new Span<float>(kv.Value(h, kv.Length + i), HeadDim));
                }

            kv.Length += n;
            units += KvHeads * ((n + QueryTile - 1) / QueryTile);
            work += (long)n * Visible(kv.Length).Count;
        }

        if (_unitSegment.Length < units)
        {
            _unitSegment = new int[units];
            _unitKvHead = new int[units];
            _unitRow = new int[units];
        }

        int u = 0;
        for (int seg = 0; seg < ctx.SegmentCount; seg++)
            for (int h = 0; h < KvHeads; h++)
                for (int i = 0; i < ctx.SegmentLength[seg]; i += QueryTile)
                    (_unitSegment[u], _unitKvHead[u], _unitRow[u++]) = (seg, h, i);

        ctx.EnsureScratch((long)units * PrefillUnitFloats);
        _ctx = ctx;
        _prefill = true;
        ctx.Run(this, units, 2L * Heads * HeadDim * work / Math.Max(1, units));
        _prefill = false;
        _ctx = null;
    }

    /// <summary>Prefill scratch per unit: per (row, head) the running max, sum and weighted values [D], then the scores
    /// of one key block, then the block's keys transposed <c>[D, KeyBlock]</c>.</summary>
    private long PrefillUnitFloats => (long)QueryTile * Group * (2 + HeadDim) + KeyBlock + (long)HeadDim * KeyBlock + 16;

    /// <summary>Whether the vectorized prefill tile applies (head dims in whole 512-bit vectors).</summary>
    private bool WideTile => Vector512.IsHardwareAccelerated && HeadDim % 16 == 0;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PrefillUnit(StepContext ctx, int unit)
    {
        int d = HeadDim, g = Group, seg = _unitSegment[unit], kvHead = _unitKvHead[unit];
        int first = ctx.SegmentStart[seg], r0 = first + _unitRow[unit], r1 = Math.Min(first + ctx.SegmentLength[seg], r0 + QueryTile);
        var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
        long origin = ctx.Sequences[first].Position;
        float* state = ctx.Scratch.Pointer + unit * PrefillUnitFloats; // per (row, head): max, sum, acc[D]
        float* scores = state + (long)QueryTile * g * (2 + d);
        int slot = 2 + d;
        for (int k = 0; k < (r1 - r0) * g; k++)
        {
            float* st = state + (long)k * slot;
            st[0] = float.NegativeInfinity;
            st[1] = 0;
            new Span<float>(st + 2, d).Clear();
        }

        long lastPos = origin + (r1 - 1 - first);
        int lo = Visible((int)(origin + (r0 - first)) + 1).Start;
        lo -= lo % KeyBlock; // blocks at fixed positions: a row's arithmetic does not depend on its tile
        float* keysT = scores + KeyBlock;
        bool wide = WideTile;
        for (int k0 = lo; k0 <= lastPos; k0 += KeyBlock)
        {
            int k1 = (int)Math.Min(lastPos + 1, k0 + KeyBlock);
            if (wide)
            {
                // The block's keys as [D, KeyBlock]: a query's scores are then D broadcast-FMAs over KeyBlock lanes.
                new Span<float>(keysT, d * KeyBlock).Clear();
                for (int k = k0; k < k1; k++)
                {
                    float* key = kv.Key(kvHead, k);
                    for (int c = 0; c < d; c++)
                        keysT[c * KeyBlock + (k - k0)] = key[c];
                }
            }

            for (int r = r0; r < r1; r++)
            {
                long pos = origin + (r - first);
                int from = Math.Max(k0, Visible((int)pos + 1).Start), to = (int)Math.Min(k1, pos + 1);
                if (from >= to)
                    continue;
                for (int j = 0; j < g; j++)
                {
                    float* q = ctx.QRotated(r) + (long)(kvHead * g + j) * d;
                    float* st = state + (long)((r - r0) * g + j) * slot;
                    float* sc = scores + (from - k0);
                    int n = to - from;
                    if (wide)
                        BlockScores(q, keysT, d, scores);
                    else
                        for (int k = from; k < to; k++)
                            sc[k - from] = VectorOps.Dot(q, kv.Key(kvHead, k), d);
                    var span = new Span<float>(sc, n);
                    float newMax = MathF.Max(st[0], TensorPrimitives.Max((ReadOnlySpan<float>)span));
                    float correction = MathF.Exp(st[0] - newMax); // 0 on the first block (e^{−∞})
                    if (correction != 1f)
                    {
                        st[1] *= correction;
                        TensorPrimitives.Multiply(new ReadOnlySpan<float>(st + 2, d), correction, new Span<float>(st + 2, d));
                    }

                    TensorPrimitives.Subtract(span, newMax, span);
                    TensorPrimitives.Exp(span, span);
                    st[0] = newMax;
                    st[1] += TensorPrimitives.Sum((ReadOnlySpan<float>)span);
                    if (wide)
                        WeightedValues(sc, kv.Value(kvHead, from), n, d, st + 2);
                    else
                        for (int k = 0; k < n; k++)
                            VectorOps.Axpy(sc[k], kv.Value(kvHead, from + k), st + 2, d);
                }
            }
        }

        for (int r = r0; r < r1; r++)
            for (int j = 0; j < g; j++)
            {
                float* st = state + (long)((r - r0) * g + j) * slot;
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(st + 2, d), 1f / st[1], new Span<float>(ctx.Output(r) + (long)(kvHead * g + j) * d, d));
            }
    }

    /// <summary><c>scores[k] = q · keysT[:, k]</c> for the <see cref="KeyBlock"/> keys of a transposed block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockScores(float* q, float* keysT, int d, float* scores)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int c = 0; c < d; c++)
        {
            var qc = Vector512.Create(q[c]);
            float* row = keysT + c * KeyBlock;
            s0 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(row), s0);
            s1 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(row + 16), s1);
            s2 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(row + 32), s2);
            s3 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(row + 48), s3);
        }

        s0.Store(scores);
        s1.Store(scores + 16);
        s2.Store(scores + 32);
        s3.Store(scores + 48);
    }

    /// <summary><c>acc += Σ_k p[k] · values[k]</c> over <paramref name="n"/> consecutive value rows of <paramref name="d"/>
    /// floats, 16 columns at a time held in a register across all keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightedValues(float* p, float* values, int n, int d, float* acc)
    {
        for (int c = 0; c < d; c += 16)
        {
            var a = Vector512.Load(acc + c);
            for (int k = 0; k < n; k++)
                a = Vector512.FusedMultiplyAdd(Vector512.Create(p[k]), Vector512.Load(values + (long)k * d + c), a);
            a.Store(acc + c);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        var ctx = _ctx!;
        if (_prefill)
        {
            for (int unit = start; unit < end; unit++)
                PrefillUnit(ctx, unit);
            return;
        }

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
