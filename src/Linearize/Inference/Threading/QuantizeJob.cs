using Linearize.Inference.Kernels;

namespace Linearize.Inference.Threading;

/// <summary>The engine's reusable parallel job quantizing a prefill block's activation rows to Q8 blocks.</summary>
internal sealed unsafe class QuantizeJob : RangeJob
{
    public Q8Activations? Target;
    public float* X;
    public int XStride;

    public override void Execute(int start, int end) => Target!.QuantizeRows(X, XStride, start, end);
}
