using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Linearize.Inference.Kernels;

namespace Linearize.Inference.Threading;

/// <summary>
/// The engine's row-wise operations over many rows at once (a prefill block): RMSNorm, SwiGLU and the residual add,
/// split across the pool by rows. Each row is computed exactly as the single-row call computes it.
/// </summary>
internal sealed unsafe class RowsJob : RangeJob
{
    public enum Kind
    {
        RmsNorm,
        SwiGlu,
        Add,
    }

    public Kind Op;
    public float* X;
    public float* Y;
    public float* Weight;
    public int Width;
    public int XStride;
    public int YStride;
    public double Eps;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int start, int end)
    {
        for (int b = start; b < end; b++)
        {
            float* x = X + (long)b * XStride, y = Y + (long)b * YStride;
            switch (Op)
            {
                case Kind.RmsNorm:
                    VectorOps.RmsNorm(x, Weight, y, Width, Eps);
                    break;
                case Kind.SwiGlu:
                    VectorOps.SwiGlu(x, x + Width, y, Width); // x = [gate | up] of one row
                    break;
                default:
                    var ys = new Span<float>(y, Width);
                    TensorPrimitives.Add(ys, new ReadOnlySpan<float>(x, Width), ys);
                    break;
            }
        }
    }
}
