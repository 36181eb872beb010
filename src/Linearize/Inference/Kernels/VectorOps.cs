using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Kernels;

/// <summary>Small fused float32 operations of a decoding step (RMSNorm, RoPE, softmax, SwiGLU, short dot products).
/// Long reductions use <see cref="TensorPrimitives"/>, which vectorises with the widest ISA available.</summary>
public static unsafe class VectorOps
{
    /// <summary>HF <c>LlamaRMSNorm</c> in float32: <c>y = w ⊙ x / sqrt(mean(x²) + eps)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNorm(float* x, float* weight, float* y, int n, double eps)
    {
        var xs = new ReadOnlySpan<float>(x, n);
        float meanSquare = TensorPrimitives.Dot(xs, xs) / n;
        float r = 1f / MathF.Sqrt(meanSquare + (float)eps);
        var ys = new Span<float>(y, n);
        TensorPrimitives.Multiply(xs, r, ys);
        TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(weight, n), ys);
    }

    /// <summary>Rotates <paramref name="heads"/> heads of size <c>d</c> in HF's rotate_half layout (pairs <c>(i, i + d/2)</c>):
    /// <c>y = x·cos + rotate_half(x)·sin</c>, then multiplies by <paramref name="scale"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rope(float* x, float* y, int heads, int d, float* cos, float* sin, float scale)
    {
        int half = d / 2;
        for (int h = 0; h < heads; h++)
        {
            float* xh = x + h * d, yh = y + h * d;
            for (int i = 0; i < half; i++)
            {
                float x1 = xh[i], x2 = xh[i + half];
                yh[i] = (x1 * cos[i] + -x2 * sin[i]) * scale;
                yh[i + half] = (x2 * cos[i] + x1 * sin[i]) * scale;
            }
        }
    }

    /// <summary>In-place softmax over <paramref name="n"/> values.</summary>
    public static void Softmax(float* x, int n)
    {
        var (_, sum) = ExpShifted(x, n);
        TensorPrimitives.Multiply(new Span<float>(x, n), 1f / sum, new Span<float>(x, n));
    }

    /// <summary>The unnormalized softmax in place, <c>x ← e^{x − max}</c>; returns the max and the sum (what a split
    /// softmax keeps to merge its parts).</summary>
    public static (float Max, float Sum) ExpShifted(float* x, int n)
    {
        var s = new Span<float>(x, n);
        float max = TensorPrimitives.Max((ReadOnlySpan<float>)s);
        TensorPrimitives.Subtract(s, max, s);
        TensorPrimitives.Exp(s, s);
        return (max, TensorPrimitives.Sum((ReadOnlySpan<float>)s));
    }

    /// <summary>SwiGLU: <c>y = silu(gate) ⊙ up</c> with <c>silu(g) = g · σ(g)</c>, vectorized (σ by TensorPrimitives).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SwiGlu(float* gate, float* up, float* y, int n)
    {
        var g = new ReadOnlySpan<float>(gate, n);
        var ys = new Span<float>(y, n);
        TensorPrimitives.Sigmoid(g, ys);
        TensorPrimitives.Multiply(ys, g, ys);
        TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(up, n), ys);
    }

    /// <summary>Dot product of two short float32 vectors (a head: 8 … 256 values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float s = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            s = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            s = Vector256.Sum(acc);
        }

        for (; i < n; i++)
            s += a[i] * b[i];
        return s;
    }

    /// <summary><c>y += a · x</c> over <paramref name="n"/> values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float a, float* x, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var av = Vector512.Create(a);
            for (; i + 16 <= n; i += 16)
                Vector512.FusedMultiplyAdd(av, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
                Vector256.FusedMultiplyAdd(av, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        }

        for (; i < n; i++)
            y[i] += a * x[i];
    }

    /// <summary>The GLA/HGRN2 decay of each channel, vectorized: <c>y = exp(logsigmoid(x) / normalizer)</c> with torch's
    /// <c>logsigmoid(x) = min(x, 0) − log1p(e^{−|x|})</c>.</summary>
    public static void LogSigmoidDecay(float* x, float* y, int n, float normalizer)
    {
        var xs = new ReadOnlySpan<float>(x, n);
        var ys = new Span<float>(y, n);
        TensorPrimitives.Abs(xs, ys);
        TensorPrimitives.Negate(ys, ys);
        TensorPrimitives.Exp(ys, ys);
        TensorPrimitives.Add(ys, 1f, ys);
        TensorPrimitives.Log(ys, ys);
        for (int i = 0; i < n; i++)
            y[i] = MathF.Min(x[i], 0f) - y[i];
        TensorPrimitives.Divide(ys, normalizer, ys);
        TensorPrimitives.Exp(ys, ys);
    }

    /// <summary>torch's <c>logsigmoid(x) = min(x, 0) − log1p(e^{−|x|})</c>.</summary>
    public static float LogSigmoid(float x) => (float)(Math.Min(x, 0.0) - Math.Log(1.0 + Math.Exp(-Math.Abs((double)x))));

    /// <summary>torch's <c>softplus(x)</c> (β = 1, threshold 20): <c>x</c> above the threshold, else <c>log1p(e^x)</c>.</summary>
    public static float Softplus(float x) => x > 20f ? x : (float)Math.Log(1.0 + Math.Exp(x));
}
