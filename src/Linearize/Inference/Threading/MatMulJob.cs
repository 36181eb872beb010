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

    /// <summary>Use the tiled matrix × matrix kernel (prefill) instead of the streaming matrix × vectors one.</summary>
    public bool Tiled;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        if (Tiled)
            MatMat.Rows(Matrix!, X, XStride, Count, Y, YStride, start, end, Isa);
        else
            MatVec.Rows(Matrix!, X, XStride, Count, Y, YStride, start, end, Isa, BatchInvariant);
    }
}
