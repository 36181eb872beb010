using Linearize.Inference.Kernels;

namespace Linearize.Inference.Threading;

/// <summary>The engine's reusable parallel job preparing a prefill block's activation rows for a product: quantizing
/// them to Q8 blocks, rounding them to bfloat16, or transposing them into token panels (whichever target is set).</summary>
internal sealed unsafe class QuantizeJob : RangeJob
{
    public Q8Activations? Target;
    public BFloat16Activations? Rounded;
    public TokenPanels? Panels;
    public float* X;
    public int XStride;

    public override void Execute(int start, int end)
    {
        if (Target is not null)
            Target.QuantizeRows(X, XStride, start, end);
        else if (Rounded is not null)
            Rounded.RoundRows(X, XStride, start, end);
        else
            Panels!.FillRows(X, XStride, start, end);
    }
}
