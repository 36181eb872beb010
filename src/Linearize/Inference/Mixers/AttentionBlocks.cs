using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Linearize.Inference.Mixers;

/// <summary>
/// The softmax prefill's block kernels: scores of four query rows against a transposed block of
/// <see cref="KeyBlock"/> keys, the online-softmax update of a (row, head) state <c>[max, sum, acc[D]]</c>, and the
/// weighted sum of the block's values, for four rows at once or one. Each row's arithmetic is the same whichever rows
/// share its call, so a prompt's cut into tiles never changes a row (<see cref="SoftmaxMixer"/>).
/// </summary>
internal static unsafe class AttentionBlocks
{
    /// <summary>Keys per block of the online softmax: a block of keys and values stays in L1, and
    /// <see cref="BlockScores4"/> holds one block's scores in four 16-lane registers.</summary>
    public const int KeyBlock = 64;

    /// <summary>The online-softmax update of one (row, head) state <c>[max, sum, acc[D]]</c> for the scores of one
    /// key block: rescale by e^{old max − new max}, then turn the scores into weights e^{s − max} in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate(float* st, float* sc, int n, int d)
    {
        var span = new Span<float>(sc, n);
        float newMax = MathF.Max(st[0], TensorPrimitives.Max((ReadOnlySpan<float>)span));
        float correction = MathF.Exp(st[0] - newMax); // 0 on the first block (e^{−∞})
        if (correction != 1f)
        {
            st[1] *= correction;
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(st + 2, d), correction, new Span<float>(st + 2, d));
        }

        TensorPrimitives.Subtract(span, newMax, span);
        TensorPrimitives.Exp(span, span);
        st[0] = newMax;
        st[1] += TensorPrimitives.Sum((ReadOnlySpan<float>)span);
    }

    /// <summary><c>s_i[k] = q_i · keysT[:, k]</c> for the <see cref="KeyBlock"/> keys of a transposed block and four
    /// query rows: each load of the keys feeds four rows' FMAs; each row's chain runs over the head dim in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void BlockScores4(float* q0, float* q1, float* q2, float* q3, float* keysT, int d,
        float* s0, float* s1, float* s2, float* s3)
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            // AVX2's 16 registers hold four rows × 16 keys: the block in four quarters, each score the same chain.
            for (int k = 0; k < KeyBlock; k += 16)
                QuarterScores4(q0, q1, q2, q3, keysT + k, d, s0 + k, s1 + k, s2 + k, s3 + k);
            return;
        }

        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
        for (int c = 0; c < d; c++)
        {
            float* row = keysT + c * KeyBlock;
            var k0 = Vector512.Load(row);
            var k1 = Vector512.Load(row + 16);
            var k2 = Vector512.Load(row + 32);
            var k3 = Vector512.Load(row + 48);
            var x = Vector512.Create(q0[c]);
            a0 = Vector512.FusedMultiplyAdd(x, k0, a0);
            a1 = Vector512.FusedMultiplyAdd(x, k1, a1);
            a2 = Vector512.FusedMultiplyAdd(x, k2, a2);
            a3 = Vector512.FusedMultiplyAdd(x, k3, a3);
            x = Vector512.Create(q1[c]);
            b0 = Vector512.FusedMultiplyAdd(x, k0, b0);
            b1 = Vector512.FusedMultiplyAdd(x, k1, b1);
            b2 = Vector512.FusedMultiplyAdd(x, k2, b2);
            b3 = Vector512.FusedMultiplyAdd(x, k3, b3);
            x = Vector512.Create(q2[c]);
            c0 = Vector512.FusedMultiplyAdd(x, k0, c0);
            c1 = Vector512.FusedMultiplyAdd(x, k1, c1);
            c2 = Vector512.FusedMultiplyAdd(x, k2, c2);
            c3 = Vector512.FusedMultiplyAdd(x, k3, c3);
            x = Vector512.Create(q3[c]);
            e0 = Vector512.FusedMultiplyAdd(x, k0, e0);
            e1 = Vector512.FusedMultiplyAdd(x, k1, e1);
            e2 = Vector512.FusedMultiplyAdd(x, k2, e2);
            e3 = Vector512.FusedMultiplyAdd(x, k3, e3);
        }

        a0.Store(s0); a1.Store(s0 + 16); a2.Store(s0 + 32); a3.Store(s0 + 48);
        b0.Store(s1); b1.Store(s1 + 16); b2.Store(s1 + 32); b3.Store(s1 + 48);
        c0.Store(s2); c1.Store(s2 + 16); c2.Store(s2 + 32); c3.Store(s2 + 48);
        e0.Store(s3); e1.Store(s3 + 16); e2.Store(s3 + 32); e3.Store(s3 + 48);
    }

    /// <summary><see cref="BlockScores4"/> on 256-bit vectors for 16 keys from <paramref name="keysT"/> (row stride
    /// <see cref="KeyBlock"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuarterScores4(float* q0, float* q1, float* q2, float* q3, float* keysT, int d,
        float* s0, float* s1, float* s2, float* s3)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        Vector256<float> c0 = default, c1 = default, e0 = default, e1 = default;
        for (int c = 0; c < d; c++)
        {
            float* row = keysT + c * KeyBlock;
            var k0 = Vector256.Load(row);
            var k1 = Vector256.Load(row + 8);
            var x = Vector256.Create(q0[c]);
            a0 = Vector256.FusedMultiplyAdd(x, k0, a0);
            a1 = Vector256.FusedMultiplyAdd(x, k1, a1);
            x = Vector256.Create(q1[c]);
            b0 = Vector256.FusedMultiplyAdd(x, k0, b0);
            b1 = Vector256.FusedMultiplyAdd(x, k1, b1);
            x = Vector256.Create(q2[c]);
            c0 = Vector256.FusedMultiplyAdd(x, k0, c0);
            c1 = Vector256.FusedMultiplyAdd(x, k1, c1);
            x = Vector256.Create(q3[c]);
            e0 = Vector256.FusedMultiplyAdd(x, k0, e0);
            e1 = Vector256.FusedMultiplyAdd(x, k1, e1);
        }

        a0.Store(s0); a1.Store(s0 + 8);
        b0.Store(s1); b1.Store(s1 + 8);
        c0.Store(s2); c1.Store(s2 + 8);
        e0.Store(s3); e1.Store(s3 + 8);
    }

    /// <summary><see cref="WeightedValues"/> for four rows over the same keys: each value load feeds four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WeightedValues4(float* p0, float* p1, float* p2, float* p3, float* values, int n, int d,
        float* acc0, float* acc1, float* acc2, float* acc3)
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            for (int c = 0; c < d; c += 8)
            {
                var a0 = Vector256.Load(acc0 + c);
                var a1 = Vector256.Load(acc1 + c);
                var a2 = Vector256.Load(acc2 + c);
                var a3 = Vector256.Load(acc3 + c);
                for (int k = 0; k < n; k++)
                {
                    var v = Vector256.Load(values + (long)k * d + c);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(p0[k]), v, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(p1[k]), v, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(p2[k]), v, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(p3[k]), v, a3);
                }

                a0.Store(acc0 + c);
                a1.Store(acc1 + c);
                a2.Store(acc2 + c);
                a3.Store(acc3 + c);
            }

            return;
        }

        for (int c = 0; c < d; c += 16)
        {
            var a0 = Vector512.Load(acc0 + c);
            var a1 = Vector512.Load(acc1 + c);
            var a2 = Vector512.Load(acc2 + c);
            var a3 = Vector512.Load(acc3 + c);
            for (int k = 0; k < n; k++)
            {
                var v = Vector512.Load(values + (long)k * d + c);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(p0[k]), v, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(p1[k]), v, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(p2[k]), v, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(p3[k]), v, a3);
            }

            a0.Store(acc0 + c);
            a1.Store(acc1 + c);
            a2.Store(acc2 + c);
            a3.Store(acc3 + c);
        }
    }

    /// <summary><c>acc += Σ_k p[k] · values[k]</c> over <paramref name="n"/> consecutive value rows of <paramref name="d"/>
    /// floats, 16 columns at a time held in a register across all keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WeightedValues(float* p, float* values, int n, int d, float* acc)
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            for (int c = 0; c < d; c += 8)
            {
                var a = Vector256.Load(acc + c);
                for (int k = 0; k < n; k++)
                    a = Vector256.FusedMultiplyAdd(Vector256.Create(p[k]), Vector256.Load(values + (long)k * d + c), a);
                a.Store(acc + c);
            }

            return;
        }

        for (int c = 0; c < d; c += 16)
        {
            var a = Vector512.Load(acc + c);
            for (int k = 0; k < n; k++)
                a = Vector512.FusedMultiplyAdd(Vector512.Create(p[k]), Vector512.Load(values + (long)k * d + c), a);
            a.Store(acc + c);
        }
    }
}
