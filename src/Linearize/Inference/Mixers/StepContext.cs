using Linearize.Inference.Threading;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The buffers of one decoding step for a batch of <see cref="Count"/> sequences, shared by every layer's mixer (layers
/// run one after another). Row b of each buffer belongs to <c>Sequences[b]</c>. Layout per row: <see cref="Qkv"/> =
/// raw projections <c>[q (H·D) | k (H_kv·D) | v (H_kv·D) | β logits, gate logits (<see cref="ExtraColumns"/>)]</c>; <see cref="QRot"/> <c>[H·D]</c> and
/// <see cref="KRot"/> <c>[H_kv·D]</c> after RoPE (q also scaled by 1/√D); <see cref="Attention"/> <c>[H·D]</c> = the
/// mixer's output before <c>o_proj</c>; <see cref="Rope"/> <c>[cos (D/2) | sin (D/2)]</c> at the row's position.
/// </summary>
internal sealed unsafe class StepContext : IDisposable
{
    public StepContext(int heads, int kvHeads, int headDim, WorkerPool pool, int extraColumns = 0)
    {
        Heads = heads;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Pool = pool;
        ExtraColumns = extraColumns;
    }

    public int Heads { get; }

    public int KvHeads { get; }

    public int HeadDim { get; }

    public WorkerPool Pool { get; }

    /// <summary>
    /// Columns after v in each <see cref="Qkv"/> row, for the widest layer: a delta-rule Liger layer's fused projection
    /// appends <c>b_proj</c>'s β logits (H, one per query head), a learned-gate layer's then <c>g_proj</c>'s gate logits
    /// (H), so neither costs an extra pass over the row; else 0. Layers without them leave these columns alone (one buffer
    /// serves every layer).
    /// </summary>
    public int ExtraColumns { get; }

    public DecodeSequence[] Sequences { get; set; } = Array.Empty<DecodeSequence>();

    public int Count { get; set; }

    public int Layer { get; set; }

    /// <summary>
    /// Prefill: rows come in segments, each a run of consecutive positions of one sequence (row
    /// <c>SegmentStart[s] + i</c> is position <c>Sequences[row].Position + i</c>; the sequence's position advances only
    /// after the forward pass). A mixer reads a segment's earlier keys from its state and the segment's own from the rows,
    /// and leaves the state exactly as stepping the rows one at a time would. When false, every row is its own sequence.
    /// </summary>
    public bool Prefill { get; set; }

    public int SegmentCount { get; set; }

    public int[] SegmentStart { get; private set; } = Array.Empty<int>();

    public int[] SegmentLength { get; private set; } = Array.Empty<int>();

    /// <summary>The segment of each row (prefill).</summary>
    public int[] RowSegment { get; private set; } = Array.Empty<int>();

    /// <summary>Position of row <paramref name="b"/>: its sequence's position plus its offset in its segment.</summary>
    public long Position(int b) =>
        Prefill ? Sequences[b].Position + (b - SegmentStart[RowSegment[b]]) : Sequences[b].Position;

    /// <summary>Room for <paramref name="segments"/> segments over <paramref name="rows"/> rows.</summary>
    public void EnsureSegments(int segments, int rows)
    {
        if (SegmentStart.Length < segments)
        {
            SegmentStart = new int[segments];
            SegmentLength = new int[segments];
        }

        if (RowSegment.Length < rows)
            RowSegment = new int[rows];
    }

    /// <summary>Runs <paramref name="job"/> over <paramref name="units"/> on the pool, or on this thread when the whole
    /// region is too small to repay waking a second thread (<paramref name="workPerUnit"/>: multiply-adds, roughly);
    /// threads claim <paramref name="grain"/> consecutive units at a time.</summary>
    public void Run(RangeJob job, int units, long workPerUnit, int grain = 1)
    {
        if ((long)units * workPerUnit < MinParallelWork)
            job.Execute(0, units);
        else
            Pool.Run(job, units, grain);
    }

    /// <summary>Below this many multiply-adds a region runs on the calling thread (a hand-off costs a few microseconds).</summary>
    public const long MinParallelWork = 32_768;

    /// <summary>Mixers must not let the batch change a sequence's arithmetic (<see cref="EngineOptions.BatchInvariant"/>).</summary>
    public bool BatchInvariant { get; set; }

    public int QkvStride => (Heads + 2 * KvHeads) * HeadDim + ExtraColumns;

    public FloatBuffer Qkv { get; } = new(0);

    public FloatBuffer QRot { get; } = new(0);

    public FloatBuffer KRot { get; } = new(0);

    public FloatBuffer Attention { get; } = new(0);

    public FloatBuffer Rope { get; } = new(0);

    /// <summary>Per-work-unit scratch; a mixer sizes it with <see cref="EnsureScratch"/>.</summary>
    public FloatBuffer Scratch { get; } = new(0);

    public float* Q(int b) => Qkv.Pointer + (long)b * QkvStride;

    public float* K(int b) => Qkv.Pointer + (long)b * QkvStride + Heads * HeadDim;

    public float* V(int b) => Qkv.Pointer + (long)b * QkvStride + (Heads + KvHeads) * HeadDim;

    /// <summary>Row <paramref name="b"/>'s β logits <c>[H]</c> (<c>b_proj x</c>; delta-rule layers only).</summary>
    public float* BetaLogits(int b) => Qkv.Pointer + (long)b * QkvStride + (Heads + 2 * KvHeads) * HeadDim;

    /// <summary>Row <paramref name="b"/>'s learned-gate logits <c>[H]</c> (<c>g_proj x + b</c>), after the β logits when the
    /// layer has them (<paramref name="afterBeta"/>).</summary>
    public float* GateLogits(int b, bool afterBeta) => BetaLogits(b) + (afterBeta ? Heads : 0);

    public float* Cos(int b) => Rope.Pointer + (long)b * HeadDim;

    public float* Sin(int b) => Rope.Pointer + (long)b * HeadDim + HeadDim / 2;

    public float* QRotated(int b) => QRot.Pointer + (long)b * Heads * HeadDim;

    public float* KRotated(int b) => KRot.Pointer + (long)b * KvHeads * HeadDim;

    public float* Output(int b) => Attention.Pointer + (long)b * Heads * HeadDim;

    public void EnsureBatch(int batch)
    {
        Qkv.EnsureLength((long)batch * QkvStride);
        QRot.EnsureLength((long)batch * Heads * HeadDim);
        KRot.EnsureLength((long)batch * KvHeads * HeadDim);
        Attention.EnsureLength((long)batch * Heads * HeadDim);
        Rope.EnsureLength((long)batch * HeadDim);
    }

    public void EnsureScratch(long floats) => Scratch.EnsureLength(floats);

    /// <summary>Applies RoPE to every row's q (scaled by <paramref name="queryScale"/>) and k.</summary>
    public void RotateAll(float queryScale)
    {
        for (int b = 0; b < Count; b++)
        {
            Kernels.VectorOps.Rope(Q(b), QRotated(b), Heads, HeadDim, Cos(b), Sin(b), queryScale);
            Kernels.VectorOps.Rope(K(b), KRotated(b), KvHeads, HeadDim, Cos(b), Sin(b), 1f);
        }
    }

    public void Dispose()
    {
        Qkv.Dispose();
        QRot.Dispose();
        KRot.Dispose();
        Attention.Dispose();
        Rope.Dispose();
        Scratch.Dispose();
    }
}
