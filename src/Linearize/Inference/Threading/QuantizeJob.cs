using Linearize.Inference.Kernels;

namespace Linearize.Inference.Threading;

/// <summary>The engine's reusable parallel job quantizing a prefill block's activation rows to Q8 blocks, or rounding
/// them to bfloat16 (whichever target is set).</summary>
internal sealed unsafe class QuantizeJob : RangeJob
{
    public Q8Activations? Target;
    public BFloat16Activations? Rounded;
    public float* X;
    public int XStride;

    public override void Execute(int start, int end)
    {
        if (Target is not null)
            Target.QuantizeRows(X, XStride, start, end);
        else
            Rounded!.RoundRows(X, XStride, start, end);
    }
}
