using Linearize.Modeling;
using Linearize.Tensors;
using static TorchSharp.torch;

namespace Linearize.Tests.Fixtures;

public static class TensorAssert
{
    /// <summary>Max absolute difference ≤ <paramref name="atol"/>; the message names the quantity and the difference.</summary>
    public static void Close(string what, Tensor expected, Tensor actual, double atol)
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(diff <= atol, $"{what}: max |diff| = {diff:E3} > {atol:E1}");
    }

    /// <summary>Relative RMSE ‖a−b‖/‖a‖ ≤ <paramref name="ratio"/> (fla's <c>assert_close</c> criterion).</summary>
    public static void RelClose(string what, Tensor expected, Tensor actual, double ratio)
    {
        Assert.Equal(expected.shape, actual.shape);
        var e = expected.to(ScalarType.Float64);
        var a = actual.to(ScalarType.Float64);
        double num = (e - a).Squared().mean().sqrt().item<double>();
        double den = e.Squared().mean().sqrt().item<double>();

        double rel = num / Math.Max(den, 1e-30);
        Assert.True(rel <= ratio, $"{what}: relative RMSE {rel:E3} > {ratio:E1} (abs RMSE {num:E3})");
    }

    public static void BitEqual(string what, Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.contiguous().bytes.SequenceEqual(actual.contiguous().bytes), $"{what}: bytes differ");
    }
}
