using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tensors;

/// <summary>
/// Tensor arithmetic with numbers whose libtorch <see cref="Scalar"/>s stay alive for the whole native call.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 creates Scalars it never holds: the <c>alpha</c> of <c>a + b</c> (<c>add(b, 1)</c>), the value
/// of <c>t * 0.5</c>, and every implicit number → Scalar conversion. Once the handle is read, nothing references the
/// object, so a garbage collection on another thread during the native call can run its finalizer and free it while
/// libtorch still reads it — the failure is <c>Expected false to be true</c> from <c>Scalar::toFloat</c>, now and then,
/// under load. <c>build/BannedSymbols.txt</c> bans those entry points; these replacements keep every Scalar in a
/// local that a <c>using</c> holds until the call returns (or in a static field, for the constant 1).
/// </remarks>
public static class TorchArithmetic
{
    static readonly Scalar One = 1.ToScalar();

    /// <summary><c>a + b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a += b</c> in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary><c>a + b</c> for a number b.</summary>
    public static Tensor Plus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.add(s, One);
    }

    /// <summary><c>a += b</c> in place, for a number b.</summary>
    public static Tensor PlusInPlace(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.add_(s, One);
    }

    /// <summary><c>a + alpha · b</c> in place.</summary>
    public static Tensor PlusScaledInPlace(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// <summary><c>a − b</c> for a number b.</summary>
    public static Tensor Minus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.sub(s);
    }

    /// <summary><c>1 − a</c>.</summary>
    public static Tensor OneMinus(this Tensor a)
    {
        using var negated = a.neg();
        return negated.add(One, One);
    }

    /// <summary><c>x²</c> elementwise as <c>x · x</c>: TorchSharp's <c>square()</c> is <c>pow(2)</c> with a Scalar it
    /// does not keep alive (banned for that reason); libtorch computes <c>pow(x, 2)</c> as <c>x · x</c>, so the result
    /// is the same to the bit.</summary>
    public static Tensor Squared(this Tensor x) => x.mul(x);

    /// <summary><c>a · b</c> for a number b.</summary>
    public static Tensor Times(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.mul(s);
    }

    /// <summary><c>a ·= b</c> in place, for a number b.</summary>
    public static Tensor TimesInPlace(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.mul_(s);
    }

    /// <summary><c>a / b</c> for a number b.</summary>
    public static Tensor Over(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.div(s);
    }

    /// <summary><c>⌊a / b⌋</c> for an integer b.</summary>
    public static Tensor FloorDiv(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.div(s, RoundingMode.floor);
    }

    // Integer overloads keep an integer tensor integer (a double Scalar would promote it to float), as position
    // arithmetic needs; C# prefers them for integer arguments.

    /// <summary><c>a + b</c> for an integer b.</summary>
    public static Tensor Plus(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.add(s, One);
    }

    /// <summary><c>a − b</c> for an integer b.</summary>
    public static Tensor Minus(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.sub(s);
    }

    /// <summary><c>a · b</c> for an integer b.</summary>
    public static Tensor Times(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.mul(s);
    }

    /// <summary><c>max(a, min)</c> for an integer min.</summary>
    public static Tensor ClampMin(this Tensor a, long min)
    {
        using var s = min.ToScalar();
        return a.clamp_min(s);
    }

    /// <summary><c>a mod b</c> (sign of b, like Python's %).</summary>
    public static Tensor Mod(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.remainder(s);
    }

    /// <summary><c>a</c> with <paramref name="value"/> where <paramref name="mask"/> is true.</summary>
    public static Tensor MaskedFill(this Tensor a, Tensor mask, double value)
    {
        using var s = value.ToScalar();
        return a.masked_fill(mask, s);
    }

    /// <summary><c>max(a, min)</c>.</summary>
    public static Tensor ClampMin(this Tensor a, double min)
    {
        using var s = min.ToScalar();
        return a.clamp_min(s);
    }

    /// <summary>Fills <paramref name="a"/> with <paramref name="value"/> in place.</summary>
    public static Tensor FillWith(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.fill_(s);
    }

    /// <summary><c>a + value · t1 · t2</c> in place.</summary>
    public static Tensor PlusProductInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcmul_(t1, t2, s);
    }

    /// <summary><c>a + value · t1 / t2</c> in place.</summary>
    public static Tensor PlusQuotientInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcdiv_(t1, t2, s);
    }

    /// <summary><c>a &gt; b</c>.</summary>
    public static Tensor Gt(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.gt(s);
    }

    /// <summary><c>a ≥ b</c>.</summary>
    public static Tensor Ge(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.ge(s);
    }

    /// <summary><c>a &lt; b</c>.</summary>
    public static Tensor Lt(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.lt(s);
    }

    /// <summary><c>a ≤ b</c>.</summary>
    public static Tensor Le(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.le(s);
    }

    /// <summary><c>a = b</c>.</summary>
    public static Tensor Eq(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.eq(s);
    }

    /// <summary><c>0, 1, …, stop − 1</c>.</summary>
    public static Tensor Arange(long stop, ScalarType dtype, Device? device = null)
    {
        using var e = stop.ToScalar();
        return torch.arange(e, dtype: dtype, device: device);
    }

    /// <summary><c>start, start + 1, …, stop − 1</c>.</summary>
    public static Tensor Arange(long start, long stop, ScalarType dtype, Device? device = null)
    {
        using var s = start.ToScalar();
        using var e = stop.ToScalar();
        return torch.arange(s, e, dtype: dtype, device: device);
    }

    /// <summary><c>start, start + step, …</c> below <paramref name="stop"/>.</summary>
    public static Tensor Arange(long start, long stop, long step, ScalarType dtype, Device? device = null)
    {
        using var s = start.ToScalar();
        using var e = stop.ToScalar();
        using var d = step.ToScalar();
        return torch.arange(s, e, d, dtype: dtype, device: device);
    }

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long[] shape, double value, ScalarType dtype)
    {
        using var s = value.ToScalar();
        return torch.full(shape, s, dtype: dtype);
    }
}
