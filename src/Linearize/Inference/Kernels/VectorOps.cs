// Repeats by design (what `duplicates` lists here): Dot4 and Axpy4 spell out their 512-bit and 256-bit loops, each
// keeping its four chains as named locals so the JIT holds them in registers.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>Asks for the cache lines of <c>[p, p + bytes)</c> (<c>prefetcht0</c>; never faults, so reaching past an
    /// allocation's end is harmless).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(byte* p, int bytes)
    {
        if (!Sse.IsSupported)
            return;
        for (int o = 0; o < bytes; o += 64)
            Sse.Prefetch0(p + o);
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

    /// <summary>
    /// <see cref="Dot"/> of <paramref name="a"/> with four vectors, each result exactly <see cref="Dot"/>'s (the same
    /// chain of FMAs, the same reduction, the same scalar tail), into <c>result[0..4)</c>. The four chains interleave,
    /// so a short dot product (a head against a cached key) no longer waits on its own FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dot4(float* a, float* b0, float* b1, float* b2, float* b3, int n, float* result)
    {
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (; i + 16 <= n; i += 16)
            {
                var x = Vector512.Load(a + i);
                c0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b0 + i), c0);
                c1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b1 + i), c1);
                c2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b2 + i), c2);
                c3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b3 + i), c3);
            }

            (s0, s1, s2, s3) = (Vector512.Sum(c0), Vector512.Sum(c1), Vector512.Sum(c2), Vector512.Sum(c3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (; i + 8 <= n; i += 8)
            {
                var x = Vector256.Load(a + i);
                c0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b0 + i), c0);
                c1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b1 + i), c1);
                c2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b2 + i), c2);
                c3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b3 + i), c3);
            }

            (s0, s1, s2, s3) = (Vector256.Sum(c0), Vector256.Sum(c1), Vector256.Sum(c2), Vector256.Sum(c3));
        }

        for (; i < n; i++)
        {
            s0 += a[i] * b0[i];
            s1 += a[i] * b1[i];
            s2 += a[i] * b2[i];
            s3 += a[i] * b3[i];
        }

        result[0] = s0;
        result[1] = s1;
        result[2] = s2;
        result[3] = s3;
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

    /// <summary>Four <see cref="Axpy"/>s in order — <c>y += a[0]·x0</c>, then <c>a[1]·x1</c>, <c>a[2]·x2</c>, <c>a[3]·x3</c> —
    /// with each slice of <paramref name="y"/> held in a register across the four: the same roundings in the same order
    /// as four calls, a quarter of the loads and stores of <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy4(float* a, float* x0, float* x1, float* x2, float* x3, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a0 = Vector512.Create(a[0]), a1 = Vector512.Create(a[1]), a2 = Vector512.Create(a[2]), a3 = Vector512.Create(a[3]);
            for (; i + 16 <= n; i += 16)
            {
                var acc = Vector512.FusedMultiplyAdd(a0, Vector512.Load(x0 + i), Vector512.Load(y + i));
                acc = Vector512.FusedMultiplyAdd(a1, Vector512.Load(x1 + i), acc);
                acc = Vector512.FusedMultiplyAdd(a2, Vector512.Load(x2 + i), acc);
                Vector512.FusedMultiplyAdd(a3, Vector512.Load(x3 + i), acc).Store(y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a0 = Vector256.Create(a[0]), a1 = Vector256.Create(a[1]), a2 = Vector256.Create(a[2]), a3 = Vector256.Create(a[3]);
            for (; i + 8 <= n; i += 8)
            {
                var acc = Vector256.FusedMultiplyAdd(a0, Vector256.Load(x0 + i), Vector256.Load(y + i));
                acc = Vector256.FusedMultiplyAdd(a1, Vector256.Load(x1 + i), acc);
                acc = Vector256.FusedMultiplyAdd(a2, Vector256.Load(x2 + i), acc);
                Vector256.FusedMultiplyAdd(a3, Vector256.Load(x3 + i), acc).Store(y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] += a[0] * x0[i];
            y[i] += a[1] * x1[i];
            y[i] += a[2] * x2[i];
            y[i] += a[3] * x3[i];
        }
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
