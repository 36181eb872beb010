using System.Runtime.CompilerServices;
using Linearize.Inference.Kernels;

namespace Linearize.Inference.Threading;

/// <summary>The engine's reusable parallel matrix × vectors job: each thread takes a contiguous block of rows.</summary>
internal sealed unsafe class MatMulJob : RangeJob
{
    public PackedMatrix? Matrix;
    public float* X;
    public int XStride;
    public int Count;
    public float* Y;
    public int YStride;
    public KernelIsa Isa;
    public bool BatchInvariant;

    /// <summary>For a Q8 matrix: the rows at <see cref="X"/> already quantized to Q8 blocks (once per product, before
    /// the threads split the weight rows).</summary>
    public Q8Activations? Quantized;

    /// <summary>For a bfloat16 matrix with <see cref="EngineOptions.BFloat16Products"/>: the rows at <see cref="X"/>
    /// already rounded to bfloat16 (once per product, before the threads split the weight rows).</summary>
    public BFloat16Activations? Rounded;

    /// <summary>For a tiled product of float32 (or widened) rows with AVX-512: the rows at <see cref="X"/> already
    /// transposed into token panels (once per product, before the threads split the weight rows).</summary>
    public TokenPanels? Panels;

    /// <summary>Use the tiled matrix × matrix kernel (prefill) instead of the streaming matrix × vectors one.</summary>
    public bool Tiled;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        if (Matrix!.Parts is not { } parts)
        {
            Run(Matrix, Y, start, end);
            return;
        }

        // A stacked matrix (PackedMatrix.Stack): each part's share of [start, end), written at the part's first row.
        int first = 0;
        foreach (var part in parts)
        {
            int a = Math.Max(start, first), b = Math.Min(end, first + part.Rows);
            if (a < b)
                Run(part, Y + first, a - first, b - first);
            first += part.Rows;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Run(PackedMatrix matrix, float* y, int start, int end)
    {
        if (matrix.Format == WeightFormat.Q8)
        {
            if (Tiled)
                MatMat.RowsQ8(matrix, Quantized!, Count, y, YStride, start, end, Isa);
            else
                MatVecQ8.Rows(matrix, Quantized!, Count, y, YStride, start, end, Isa);
        }
        else if (matrix.Format == WeightFormat.BFloat16 && Rounded is not null)
            MatMulBFloat16.Rows(matrix, Rounded, Count, y, YStride, start, end, Isa); // batch-invariant: decoding and prefill alike
        else if (Tiled && Panels is not null)
            MatMat.Rows(matrix, Panels, y, YStride, start, end);
        else if (Tiled)
            MatMat.Rows(matrix, X, XStride, Count, y, YStride, start, end, Isa);
        else
            MatVec.Rows(matrix, X, XStride, Count, y, YStride, start, end, Isa, BatchInvariant);
    }
}
