// Repeats by design (what `duplicates` lists here): the prefill tiles are spelled out once per vector width (512-bit,
// and 256-bit for AVX2), each keeping its accumulators as named locals so the JIT holds them in registers.
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

    /// <summary>Prefill: keys per block of the online softmax (<see cref="AttentionBlocks.KeyBlock"/>).</summary>
    private const int KeyBlock = AttentionBlocks.KeyBlock;

    /// <summary>
    /// Decoding: how far ahead of the keys (and values) being read a unit asks for the next ones (<c>prefetcht0</c>, each
    /// cache line once). Every step streams the whole cache from memory — the weights read between two visits of a
    /// layer evict it — as one sequential run per unit, which the hardware prefetcher alone served at about half the
    /// rate of the weight products.
    /// </summary>
    internal const int KvPrefetchBytes = 2048;

    private readonly int? _window;
    private readonly int _maxPositions;
    private StepContext? _ctx;
    private PrefillPhase _phase;
    private int[] _segmentLo = Array.Empty<int>(), _segmentBlocks = Array.Empty<int>(), _segmentFirstBlockUnit = Array.Empty<int>();
    private long[] _segmentKeysT = Array.Empty<long>();
    private int[] _unitSegment = Array.Empty<int>(), _unitKvHead = Array.Empty<int>(), _unitRow = Array.Empty<int>();
    private int _splits;
    private int _maxSplitLength;
    private StepLayout _stepLayout;
    private readonly PrefillLayout _prefillLayout;

    /// <summary>What <see cref="Execute"/> runs: a decoding step's units, or one of prefill's two passes.</summary>
    private enum PrefillPhase
    {
        None,

        /// <summary>Each unit appends one (segment, KV head)'s new keys and values to its cache: one sequential run of
        /// writes per unit, across the pool.</summary>
        AppendKv,

        /// <summary>Each unit copies one block of <see cref="KeyBlock"/> keys of one (segment, KV head) into
        /// <c>[D, KeyBlock]</c>.</summary>
        TransposeKeys,

        /// <summary>Each unit attends one tile of query rows (<see cref="PrefillUnit"/>).</summary>
        Attend,
    }

    /// <summary>Where each region of one step unit's scratch starts, in floats from its base: the scores of the group's
    /// query heads [G, maxSplit] (rows <c>maxSplit</c> apart), then per query head its partial softmax
    /// <c>[max, sum, out[D]]</c>.</summary>
    private readonly record struct StepLayout
    {
        public StepLayout(int group, int maxSplit, int d)
        {
            (Scores, Partials) = (0, (long)group * maxSplit);
            Floats = (long)group * maxSplit + (long)group * (2 + d);
        }

        public long Scores { get; }

        public long Partials { get; }

        public long Floats { get; }
    }

    /// <summary>Where each region of one prefill unit's scratch starts, in floats from its base: per (row, head) of the
    /// tile the running <c>[max, sum, acc[D]]</c>, then the scores of one key block, and the wide path's scores of
    /// <see cref="RowTile"/> rows <c>[RowTile, KeyBlock]</c>. (The transposed keys are shared by all of a head's tiles:
    /// they follow every unit's scratch.)</summary>
    private readonly record struct PrefillLayout
    {
        public PrefillLayout(int group, int d)
        {
            State = 0;
            Scores = (long)QueryTile * group * (2 + d);
            RowScores = Scores + KeyBlock;
            Floats = (long)QueryTile * group * (2 + d) + KeyBlock + (long)RowTile * KeyBlock + 16;
        }

        public long State { get; }

        public long Scores { get; }

        public long RowScores { get; }

        public long Floats { get; }
    }

    /// <param name="maxPositions">The model's context: each sequence's cache reserves room for it (<see cref="KvState"/>).</param>
    public SoftmaxMixer(int heads, int kvHeads, int headDim, int? slidingWindow, int maxPositions) : base(heads, kvHeads, headDim)
    {
        _window = slidingWindow;
        _maxPositions = maxPositions;
        _prefillLayout = new PrefillLayout(Group, headDim);
    }

    public override LayerState CreateState() => new KvState(KvHeads, HeadDim, _maxPositions);

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
        _stepLayout = new StepLayout(Group, _maxSplitLength, HeadDim);
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

    /// <summary>Scratch per step unit (<see cref="StepLayout"/>).</summary>
    private long UnitFloats => _stepLayout.Floats;

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
        for (int seg = 0; seg < ctx.SegmentCount; seg++)
        {
            int first = ctx.SegmentStart[seg];
            var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
            if (kv.Length != ctx.Sequences[first].Position)
                throw new InvalidOperationException($"KV cache holds {kv.Length} positions at position {ctx.Sequences[first].Position}");
            kv.EnsureCapacity(kv.Length + ctx.SegmentLength[seg]);
        }

        // Head by head rather than row by row: row by row a block's appends were 2·H_kv interleaved runs of 256 bytes on
        // the calling thread alone, ~8 % of a 512-token prefill of stories110m.
        _ctx = ctx;
        _phase = PrefillPhase.AppendKv;
        ctx.Run(this, ctx.SegmentCount * KvHeads, 2L * HeadDim * ctx.Count / Math.Max(1, ctx.SegmentCount));
        int units = 0;
        long work = 0;
        for (int seg = 0; seg < ctx.SegmentCount; seg++)
        {
            int first = ctx.SegmentStart[seg], n = ctx.SegmentLength[seg];
            var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
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

        // The wide tile reads each key block as [D, KeyBlock]. Every tile of a head reads the same blocks, so they are
        // transposed once per call (a pass over the visible keys) rather than once per tile that reads them (T/16 times).
        long unitFloats = (long)units * PrefillUnitFloats, keysTFloats = 0;
        int blockUnits = 0;
        if (WideTile)
        {
            EnsureSegmentArrays(ctx.SegmentCount);
            for (int seg = 0; seg < ctx.SegmentCount; seg++)
            {
                int first = ctx.SegmentStart[seg];
                var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
                long origin = ctx.Sequences[first].Position;
                int lo = Visible((int)origin + 1).Start;
                lo -= lo % KeyBlock; // blocks at fixed positions, as PrefillUnit reads them
                _segmentLo[seg] = lo;
                _segmentBlocks[seg] = (kv.Length - lo + KeyBlock - 1) / KeyBlock;
                _segmentKeysT[seg] = unitFloats + keysTFloats;
                _segmentFirstBlockUnit[seg] = blockUnits;
                keysTFloats += (long)KvHeads * _segmentBlocks[seg] * HeadDim * KeyBlock;
                blockUnits += KvHeads * _segmentBlocks[seg];
            }
        }

        ctx.EnsureScratch(unitFloats + keysTFloats);
        if (blockUnits > 0)
        {
            _phase = PrefillPhase.TransposeKeys;
            ctx.Run(this, blockUnits, (long)HeadDim * KeyBlock);
        }

        _phase = PrefillPhase.Attend;
        ctx.Run(this, units, 2L * Heads * HeadDim * work / Math.Max(1, units));
        _phase = PrefillPhase.None;
        _ctx = null;
    }

    /// <summary>Appends segment <paramref name="seg"/>'s new keys (rotated) and values of KV head <paramref name="h"/>
    /// after the positions its cache holds (its length is advanced once every head is written).</summary>
    private void AppendKv(StepContext ctx, int seg, int h)
    {
        int first = ctx.SegmentStart[seg], n = ctx.SegmentLength[seg];
        var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
        float* keys = kv.Key(h, kv.Length), values = kv.Value(h, kv.Length);
        for (int i = 0; i < n; i++)
            new ReadOnlySpan<float>(ctx.KRotated(first + i) + h * HeadDim, HeadDim).CopyTo(new Span<float>(keys + (long)i * HeadDim, HeadDim));
        for (int i = 0; i < n; i++)
            new ReadOnlySpan<float>(ctx.V(first + i) + h * HeadDim, HeadDim).CopyTo(new Span<float>(values + (long)i * HeadDim, HeadDim));
    }

    private void EnsureSegmentArrays(int segments)
    {
        if (_segmentLo.Length >= segments)
            return;
        _segmentLo = new int[segments];
        _segmentBlocks = new int[segments];
        _segmentFirstBlockUnit = new int[segments];
        _segmentKeysT = new long[segments];
    }

    /// <summary>Key block <c>[D, KeyBlock]</c> number <paramref name="block"/> (from the segment's first visible block)
    /// of one (segment, KV head), in the scratch after every unit's own.</summary>
    private float* KeysT(StepContext ctx, int seg, int kvHead, int block) =>
        ctx.Scratch.Pointer + _segmentKeysT[seg] + ((long)kvHead * _segmentBlocks[seg] + block) * HeadDim * KeyBlock;

    /// <summary>Transposes one key block of one (segment, KV head); positions past the cache are zeros.</summary>
    private void TransposeKeyBlock(StepContext ctx, int unit)
    {
        int seg = 0;
        while (seg + 1 < ctx.SegmentCount && _segmentFirstBlockUnit[seg + 1] <= unit)
            seg++;
        int local = unit - _segmentFirstBlockUnit[seg], kvHead = local / _segmentBlocks[seg], block = local % _segmentBlocks[seg];
        var kv = (KvState)ctx.Sequences[ctx.SegmentStart[seg]].Layers[ctx.Layer];
        int d = HeadDim, k0 = _segmentLo[seg] + block * KeyBlock, k1 = Math.Min(kv.Length, k0 + KeyBlock);
        float* keysT = KeysT(ctx, seg, kvHead, block);
        if (k1 - k0 < KeyBlock)
            new Span<float>(keysT, d * KeyBlock).Clear();
        for (int k = k0; k < k1; k++)
        {
            float* key = kv.Key(kvHead, k);
            for (int c = 0; c < d; c++)
                keysT[c * KeyBlock + (k - k0)] = key[c];
        }
    }

    /// <summary>Scratch per prefill unit (<see cref="PrefillLayout"/>).</summary>
    private long PrefillUnitFloats => _prefillLayout.Floats;

    /// <summary>Whether the vectorized prefill tile applies: head dims in whole vectors of the widest width (512-bit, or
    /// 256-bit on AVX2). Both widths compute each score and each output column by the same chain of FMAs.</summary>
    private bool WideTile => Vector512.IsHardwareAccelerated ? HeadDim % 16 == 0 : Vector256.IsHardwareAccelerated && HeadDim % 8 == 0;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PrefillUnit(StepContext ctx, int unit)
    {
        int d = HeadDim, g = Group, seg = _unitSegment[unit], kvHead = _unitKvHead[unit];
        int first = ctx.SegmentStart[seg], r0 = first + _unitRow[unit], r1 = Math.Min(first + ctx.SegmentLength[seg], r0 + QueryTile);
        var kv = (KvState)ctx.Sequences[first].Layers[ctx.Layer];
        long origin = ctx.Sequences[first].Position;
        float* scratch = ctx.Scratch.Pointer + unit * PrefillUnitFloats;
        float* state = scratch + _prefillLayout.State; // per (row, head): max, sum, acc[D]
        float* scores = scratch + _prefillLayout.Scores, rowScores = scratch + _prefillLayout.RowScores;
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
        bool wide = WideTile;
        for (int k0 = lo; k0 <= lastPos; k0 += KeyBlock)
        {
            int k1 = (int)Math.Min(lastPos + 1, k0 + KeyBlock);
            if (wide)
            {
                // The block's keys as [D, KeyBlock] (TransposeKeyBlock): a query's scores are then D broadcast-FMAs over
                // KeyBlock lanes. Keys past this tile's last row may be there; each row reads only its own [from, to).
                float* keysT = KeysT(ctx, seg, kvHead, (k0 - _segmentLo[seg]) / KeyBlock);
                for (int j = 0; j < g; j++)
                    for (int r = r0; r < r1; r += RowTile)
                        WideRows(ctx, kv, kvHead, j, first, origin, r0, Math.Min(r1, r + RowTile) - r, r, k0, k1, state, rowScores, keysT);
                continue;
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
                    for (int k = from; k < to; k++)
                        sc[k - from] = VectorOps.Dot(q, kv.Key(kvHead, k), d);
                    AttentionBlocks.Accumulate(st, sc, n, d);
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

    /// <summary>Prefill, wide path: query rows handled together per key block, sharing each load of the block's keys
    /// and values (one row per register set; <see cref="RowTile"/> sets fit the 32 vector registers).</summary>
    private const int RowTile = 4;

    /// <summary>
    /// One key block for <paramref name="count"/> (≤ <see cref="RowTile"/>) consecutive rows from <paramref name="r"/>
    /// and one head of the group: scores of all four rows in one pass over the transposed keys, each row's online
    /// softmax update, then the weighted values — together when the rows see the same keys (every block but the
    /// diagonal and a window's edge), else row by row. Each row's arithmetic is the same whichever rows share its tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WideRows(StepContext ctx, KvState kv, int kvHead, int j, int first, long origin, int r0, int count, int r,
        int k0, int k1, float* state, float* rowScores, float* keysT)
    {
        int d = HeadDim, g = Group, slot = 2 + d;
        var from = stackalloc int[RowTile];
        var to = stackalloc int[RowTile];
        var q = stackalloc nint[RowTile];
        var sc = stackalloc nint[RowTile];
        bool same = true, any = false;
        for (int i = 0; i < RowTile; i++)
        {
            int row = r + Math.Min(i, count - 1); // a short tile repeats its last row; only `count` rows are used
            long pos = origin + (row - first);
            from[i] = Math.Max(k0, Visible((int)pos + 1).Start);
            to[i] = (int)Math.Min(k1, pos + 1);
            q[i] = (nint)(ctx.QRotated(row) + (long)(kvHead * g + j) * d);
            sc[i] = (nint)(rowScores + i * KeyBlock);
            if (i < count)
            {
                any |= from[i] < to[i];
                same &= from[i] == from[0] && to[i] == to[0];
            }
        }

        if (!any)
            return;
        AttentionBlocks.BlockScores4((float*)q[0], (float*)q[1], (float*)q[2], (float*)q[3], keysT, d,
            (float*)sc[0], (float*)sc[1], (float*)sc[2], (float*)sc[3]);
        for (int i = 0; i < count; i++)
            if (from[i] < to[i])
                AttentionBlocks.Accumulate(state + (long)((r + i - r0) * g + j) * slot, (float*)sc[i] + (from[i] - k0), to[i] - from[i], d);

        if (same && count == RowTile && from[0] < to[0])
        {
            int n = to[0] - from[0], off = from[0] - k0;
            float* st0 = state + (long)((r - r0) * g + j) * slot;
            AttentionBlocks.WeightedValues4((float*)sc[0] + off, (float*)sc[1] + off, (float*)sc[2] + off, (float*)sc[3] + off,
                kv.Value(kvHead, from[0]), n, d, st0 + 2, st0 + g * slot + 2, st0 + 2 * g * slot + 2, st0 + 3 * g * slot + 2);
            return;
        }

        for (int i = 0; i < count; i++)
            if (from[i] < to[i])
                AttentionBlocks.WeightedValues((float*)sc[i] + (from[i] - k0), kv.Value(kvHead, from[i]), to[i] - from[i], d,
                    state + (long)((r + i - r0) * g + j) * slot + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        var ctx = _ctx!;
        if (_phase == PrefillPhase.AppendKv)
        {
            for (int unit = start; unit < end; unit++)
                AppendKv(ctx, unit / KvHeads, unit % KvHeads);
            return;
        }

        if (_phase == PrefillPhase.TransposeKeys)
        {
            for (int unit = start; unit < end; unit++)
                TransposeKeyBlock(ctx, unit);
            return;
        }

        if (_phase == PrefillPhase.Attend)
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
            float* scores = scratch + _stepLayout.Scores;
            float* partial = scratch + _stepLayout.Partials; // per head: max, sum, out[D]
            float* q = ctx.QRotated(b) + (long)kvHead * g * d;     // the group's query heads are consecutive
            int s4 = 0;
            for (; s4 + 4 <= n; s4 += 4)
            {
                // Four keys at a time (each score exactly VectorOps.Dot's): independent chains instead of one.
                float* key = kv.Key(kvHead, s0 + s4);
                VectorOps.Prefetch((byte*)key + KvPrefetchBytes, 4 * d * sizeof(float));
                for (int j = 0; j < g; j++)
                    VectorOps.Dot4(q + j * d, key, key + d, key + 2 * d, key + 3 * d, d, scores + (long)j * _maxSplitLength + s4);
            }

            for (int s = s4; s < n; s++)
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

            int v4 = 0;
            for (; v4 + 4 <= n; v4 += 4)
            {
                float* value = kv.Value(kvHead, s0 + v4);
                VectorOps.Prefetch((byte*)value + KvPrefetchBytes, 4 * d * sizeof(float));
                for (int j = 0; j < g; j++)
                    VectorOps.Axpy4(scores + (long)j * _maxSplitLength + v4, value, value + d, value + 2 * d, value + 3 * d,
                        partial + j * (2 + d) + 2, d);
            }

            for (int s = v4; s < n; s++)
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
                    max = Math.Max(max, UnitScratch(ctx, row * _splits + split)[_stepLayout.Partials + j * (2 + d)]);
                new Span<float>(output, d).Clear();
                float total = 0;
                for (int split = 0; split < _splits; split++)
                {
                    float* pj = UnitScratch(ctx, row * _splits + split) + _stepLayout.Partials + j * (2 + d);
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
        var torchCache = CacheImport.Expect<KvCache>(cache, "a KV cache");
        if (torchCache.Length != seen)
            throw CacheImport.Error($"the KV cache holds {torchCache.Length} positions, the model has seen {seen}");
        using var scope = NewDisposeScope();
        var (keys, values) = torchCache.Read();
        var ks = CacheImport.Floats(keys, row); // [H_kv, S, D]
        var vs = CacheImport.Floats(values, row);
        int length = (int)seen;
        kv.EnsureCapacity(length);
        kv.Length = length;
        for (int h = 0; h < KvHeads; h++)
        {
            int n = length * HeadDim;
            ks.Slice(h * n, n).CopyTo(new Span<float>(kv.Key(h, 0), n));
            vs.Slice(h * n, n).CopyTo(new Span<float>(kv.Value(h, 0), n));
        }
    }
}
