using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Kernels;
using Linearize.LinearAttention;

namespace Linearize.Inference.Mixers;

/// <summary>
/// One decoding step of a Liger layer's gated recurrent branch for one query head, in float32 — the engine twin of
/// <c>LigerAttention.Recurrent</c> with <c>GlaRecurrent.Step</c> / <c>GsaRecurrent.Step</c> (same gates, feature maps
/// and update order). GLA: <c>S = Diag(e^g) S + φ(k)ᵀv</c>, <c>o = scale · φ(q) S</c>, <c>g = logsigmoid(k)/n</c>;
/// HGRN2 writes the key <c>1 − e^g</c>; Mamba2 / mLSTM / Retention use one gate per head from the mean of the key;
/// GSA keeps a key→slot state and a slot→value state joined by a softmax over M slots. The delta-rule families
/// (<c>LigerAttention.DeltaRule</c> with <c>DeltaRuleRecurrent.Step</c>) L2-normalize q and k, take β from the row's
/// <c>b_proj</c> logits and, for Gated DeltaNet, α from the pooled key: <c>S ← αS; S ← S + k (β (v − Sᵀk))ᵀ</c>,
/// <c>o = scale · Sᵀq</c>, with the same <c>[H, K, V]</c> state. With the learned gate (docs/METHODS.md §1.8) the gate of
/// every channel is <c>logsigmoid(g)/n</c> from the row's <c>g_proj</c> logit for the query head; with the RMSNorm read-out
/// (§1.9) the head's read-out is divided by its root mean square.
/// </summary>
internal sealed unsafe class RecurrentBranch
{
    private const float DenominatorEps = (float)LinearAttentionConstants.DenominatorEps;
    private const float L2NormEps = (float)LinearAttentionConstants.L2NormEps;
    private const float OutputNormEps = (float)LinearAttentionConstants.OutputNormEps;
    private readonly LigerOptions _options;
    private readonly int _heads, _kvHeads, _d, _slots;
    private readonly float _normalizer, _scale;
    private readonly ScratchLayout _layout;

    public RecurrentBranch(LigerOptions options, int heads, int kvHeads, int headDim)
    {
        _options = options;
        _heads = heads;
        _kvHeads = kvHeads;
        _d = headDim;
        _slots = options.Slots ?? headDim;
        _normalizer = (float)options.EffectiveNormalizer;
        _scale = (float)options.RecurrentScale;
        _layout = new ScratchLayout(headDim, _slots);
    }

    /// <summary>
    /// Where each vector of one (row, head)'s scratch starts, in floats from its base. A head runs one family, so the
    /// families' regions overlap. Gated: φ(q) [D], the written key [D], the decay e^g [D], v with the denominator's ones
    /// column [D + 1], the read-out [D + 1]. Delta rule: normalized q [D] and k [D], the correction β(v − Sᵀk) [D], the
    /// read-out [D]. GSA: the pooled key [M], α [M], the slot write 1 − α [M], the slot probabilities [M].
    /// </summary>
    private readonly record struct ScratchLayout
    {
        public ScratchLayout(int d, int m)
        {
            (PhiQ, Key, Decay, Values, Read) = (0, d, 2 * d, 3 * d, 4 * d + 1);
            (QNorm, KNorm, Correction, DeltaRead) = (0, d, 2 * d, 3 * d);
            (Pooled, Alpha, Write, Probabilities) = (0, m, 2 * m, 3 * m);
            Floats = 6 * (d + 1) + 4 * m + 16;
        }

        public int PhiQ { get; }

        public int Key { get; }

        public int Decay { get; }

        public int Values { get; }

        public int Read { get; }

        public int QNorm { get; }

        public int KNorm { get; }

        public int Correction { get; }

        public int DeltaRead { get; }

        public int Pooled { get; }

        public int Alpha { get; }

        public int Write { get; }

        public int Probabilities { get; }

        /// <summary>The largest family's regions, with room to spare.</summary>
        public int Floats { get; }
    }

    private bool IsGsa => _options.Family == LigerFamily.Gsa;

    public bool IsDeltaRule => _options.IsDeltaRule;

    /// <summary>One learned gate per query head (docs/METHODS.md §1.8): a group's query heads hold different states.</summary>
    public bool HasLearnedGate => _options.HasLearnedGate;

    /// <summary>Value columns of the state: D, plus the key sum's ones column when normalizing or keeping a sparse cache.</summary>
    private int ValueColumns => _d + (_options.CarriesKeySum ? 1 : 0);

    /// <summary>Floats of the main state for all heads: <c>[H, K, V(+1)]</c>, or GSA's <c>[H, K, M]</c>.</summary>
    public long StateFloats => IsGsa ? (long)_heads * _d * _slots : (long)_heads * _d * ValueColumns;

    /// <summary>GSA's slot→value state <c>[H, M, V]</c>; 0 otherwise.</summary>
    public long SlotValueFloats => IsGsa ? (long)_heads * _slots * _d : 0;

    public int ScratchFloats => _layout.Floats;

    /// <summary>Torch's state shapes for the hand-over: (main, slot values).</summary>
    public (long[] Main, long[]? Slots) StateShapes => IsGsa
        ? (new long[] { _heads, _d, _slots }, new long[] { _heads, _slots, _d })
        : (new long[] { _heads, _d, ValueColumns }, null);

    /// <summary>Row <paramref name="b"/>, query head <paramref name="h"/>: updates the head's state and writes its read-out [D].</summary>
    public void Step(StepContext ctx, int b, int h, WindowState state, float* scratch, float* output)
    {
        int kvHead = h / (_heads / _kvHeads);
        float* q = ctx.Q(b) + h * _d, k = ctx.K(b) + kvHead * _d, v = ctx.V(b) + kvHead * _d;
        if (IsGsa)
            Gsa(ctx, b, kvHead, q, k, v, state.Recurrent.Pointer + (long)h * _d * _slots, state.SlotValues.Pointer + (long)h * _slots * _d, scratch, output);
        else if (_options.IsDeltaRule)
            DeltaRule(q, k, v, ctx.BetaLogits(b)[h], GateLogit(ctx, b, h), state.Recurrent.Pointer + (long)h * _d * _d, scratch, output);
        else
            Gated(q, k, v, GateLogit(ctx, b, h), state.Recurrent.Pointer + (long)h * _d * ValueColumns, scratch, output);
    }

    /// <summary>The learned gate's logit of row <paramref name="b"/>, query head <paramref name="h"/>; 0 (unused) without one.</summary>
    private float GateLogit(StepContext ctx, int b, int h) =>
        _options.HasLearnedGate ? ctx.GateLogits(b, _options.IsDeltaRule)[h] : 0f;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Gated(float* q, float* k, float* v, float gateLogit, float* s, float* scratch, float* output)
    {
        int d = _d, cols = ValueColumns;
        float* phiQ = scratch + _layout.PhiQ, key = scratch + _layout.Key, decay = scratch + _layout.Decay, vv = scratch + _layout.Values,
            o = scratch + _layout.Read;
        Copy(q, phiQ, d);
        VectorOps.Softmax(phiQ, d);
        switch (_options.Family)
        {
            case LigerFamily.Gla when _options.HasLearnedGate:
            case LigerFamily.Mamba2 or LigerFamily.Mlstm or LigerFamily.Retention when _options.HasLearnedGate:
            {
                // One learned scalar per query head, for every channel.
                float e = MathF.Exp(VectorOps.LogSigmoid(gateLogit) / _normalizer);
                for (int c = 0; c < d; c++)
                    decay[c] = e;
                Copy(k, key, d);
                VectorOps.Softmax(key, d);
                break;
            }
            case LigerFamily.Gla:
                VectorOps.LogSigmoidDecay(k, decay, d, _normalizer);
                Copy(k, key, d);
                VectorOps.Softmax(key, d);
                break;
            case LigerFamily.Hgrn2:
                VectorOps.LogSigmoidDecay(k, decay, d, _normalizer);
                for (int c = 0; c < d; c++)
                    key[c] = 1 - decay[c];

                break;
            default:
            {
                // Liger's AdaptiveAvgPool1d(H_kv) over [H_kv·D]: each KV head's mean.
                float sum = 0;
                for (int c = 0; c < d; c++)
                    sum += k[c];
                float pooled = sum / d;
                float g = (_options.Family == LigerFamily.Mamba2 ? -VectorOps.Softplus(pooled) : VectorOps.LogSigmoid(pooled)) / _normalizer;
                float e = MathF.Exp(g);
                for (int c = 0; c < d; c++)
                    decay[c] = e;
                Copy(k, key, d);
                VectorOps.Softmax(key, d);
                break;
            }
        }

        Copy(v, vv, d);
        if (cols > d)
            vv[d] = 1;
        new Span<float>(o, cols).Clear();
        VectorOps.Prefetch((byte*)s, EngineMixer.StatePrefetchBytes);
        for (int c = 0; c < d; c++)
        {
            float* row = s + (long)c * cols;
            VectorOps.Prefetch((byte*)row + EngineMixer.StatePrefetchBytes, cols * sizeof(float));
            DecayWrite(row, decay[c], key[c], vv, cols);
            VectorOps.Axpy(phiQ[c], row, o, cols);
        }

        if (_options.NormalizeRecurrent)
        {
            float denominator = o[d] * _scale + DenominatorEps;
            for (int j = 0; j < d; j++)
                output[j] = o[j] * _scale / denominator;
        }
        else
        {
            for (int j = 0; j < d; j++)
                output[j] = o[j] * _scale;
        }

        if (_options.OutputNorm == LigerOutputNorm.RmsNorm)
        {
            float squares = 0;
            for (int j = 0; j < d; j++)
                squares += output[j] * output[j];
            float r = 1f / MathF.Sqrt(squares / d + OutputNormEps);
            for (int j = 0; j < d; j++)
                output[j] *= r;
        }
    }

    /// <summary>
    /// LoLA's recall error of the pair a gated step of head <paramref name="h"/> just wrote (docs/METHODS.md §1.7), read
    /// from the updated state with the written key still in <paramref name="scratch"/>:
    /// <c>‖v − key·S / (key·z + ε)‖²</c>, the twin of <c>LigerAttention.RecallErrors</c>; for the delta rule the state read
    /// with the normalized key as it is, <c>‖v − Sᵀk̂‖²</c> (the twin of <c>LigerAttention.DeltaRule</c>'s errors). Call
    /// right after <see cref="Step"/> for the same row and head.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float RecallError(StepContext ctx, int b, int h, WindowState state, float* scratch)
    {
        if (_options.IsDeltaRule)
            return DeltaRecallError(ctx, b, h, state, scratch);
        int d = _d, cols = ValueColumns, kvHead = h / (_heads / _kvHeads);
        float* key = scratch + _layout.Key, read = scratch + _layout.Read, v = ctx.V(b) + kvHead * d;
        float* s = state.Recurrent.Pointer + (long)h * d * cols;
        new Span<float>(read, cols).Clear();
        for (int c = 0; c < d; c++)
            VectorOps.Axpy(key[c], s + (long)c * cols, read, cols);
        float denominator = read[d] + DenominatorEps, error = 0;
        for (int j = 0; j < d; j++)
        {
            float e = v[j] - read[j] / denominator;
            error += e * e;
        }

        return error;
    }

    /// <summary><c>‖v − Sᵀk̂‖²</c> from head <paramref name="h"/>'s updated delta-rule state, with the normalized key the
    /// step left in <paramref name="scratch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DeltaRecallError(StepContext ctx, int b, int h, WindowState state, float* scratch)
    {
        int d = _d, kvHead = h / (_heads / _kvHeads);
        float* kn = scratch + _layout.KNorm, read = scratch + _layout.Read, v = ctx.V(b) + kvHead * d;
        float* s = state.Recurrent.Pointer + (long)h * d * d;
        new Span<float>(read, d).Clear();
        for (int c = 0; c < d; c++)
            VectorOps.Axpy(kn[c], s + (long)c * d, read, d);
        float error = 0;
        for (int j = 0; j < d; j++)
        {
            float e = v[j] - read[j];
            error += e * e;
        }

        return error;
    }

    /// <summary>
    /// One delta-rule step of one head, in <c>DeltaRuleRecurrent.Step</c>'s order: decay (Gated DeltaNet), recall
    /// <c>Sᵀk</c> from the decayed state, write <c>k νᵀ</c> with <c>ν = β (v − Sᵀk)</c>, read <c>Sᵀq</c> from the new
    /// state. Two passes over the <c>[K, V]</c> state: the write needs the whole recall first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DeltaRule(float* q, float* k, float* v, float betaLogit, float gateLogit, float* s, float* scratch, float* output)
    {
        int d = _d;
        float* qn = scratch + _layout.QNorm, kn = scratch + _layout.KNorm, error = scratch + _layout.Correction, o = scratch + _layout.DeltaRead;
        L2Normalize(q, qn, d);
        L2Normalize(k, kn, d);
        float beta = 1f / (1f + MathF.Exp(-betaLogit));
        if (_options.NegativeEigenvalues)
            beta *= 2; // β ∈ (0, 2): the eigenvalue along k may turn negative (Grazzi et al. 2025)
        float alpha = 1;
        bool gated = _options.Family == LigerFamily.Gdn;
        if (gated && _options.HasLearnedGate)
        {
            alpha = MathF.Exp(VectorOps.LogSigmoid(gateLogit) / _normalizer);
        }
        else if (gated)
        {
            // As the scalar-gate families: one gate per KV head from the mean of its raw key (Liger's pooling).
            float sum = 0;
            for (int c = 0; c < d; c++)
                sum += k[c];
            alpha = MathF.Exp(VectorOps.LogSigmoid(sum / d) / _normalizer);
        }

        // Pass 1: S ← αS, and the value the decayed state recalls for k.
        new Span<float>(error, d).Clear();
        VectorOps.Prefetch((byte*)s, EngineMixer.StatePrefetchBytes);
        for (int c = 0; c < d; c++)
        {
            float* row = s + (long)c * d;
            VectorOps.Prefetch((byte*)row + EngineMixer.StatePrefetchBytes, d * sizeof(float));
            if (gated)
                Scale(row, alpha, d);
            VectorOps.Axpy(kn[c], row, error, d);
        }

        for (int j = 0; j < d; j++)
            error[j] = (v[j] - error[j]) * beta;

        // Pass 2: S ← S + k νᵀ, and the read-out from the new state.
        new Span<float>(o, d).Clear();
        for (int c = 0; c < d; c++)
        {
            float* row = s + (long)c * d;
            VectorOps.Axpy(kn[c], error, row, d);
            VectorOps.Axpy(qn[c], row, o, d);
        }

        for (int j = 0; j < d; j++)
            output[j] = o[j] * _scale;
    }

    /// <summary><c>y = x / √(Σx² + eps)</c> over one head (x · rsqrt, as the TorchSharp layer).</summary>
    private static void L2Normalize(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++)
            sum += x[i] * x[i];
        float r = 1f / MathF.Sqrt(sum + L2NormEps);
        for (int i = 0; i < n; i++)
            y[i] = x[i] * r;
    }

    private static void Scale(float* x, float a, int n)
    {
        var xs = new Span<float>(x, n);
        System.Numerics.Tensors.TensorPrimitives.Multiply(xs, a, xs);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Gsa(StepContext ctx, int b, int kvHead, float* q, float* k, float* v, float* hk, float* hv, float* scratch, float* output)
    {
        int d = _d, m = _slots;
        float* pooled = scratch + _layout.Pooled, alpha = scratch + _layout.Alpha, write = scratch + _layout.Write, p = scratch + _layout.Probabilities;
        if (m == d)
        {
            Copy(k, pooled, d);
        }
        else
        {
            // AdaptiveAvgPool1d(M·H_kv) over the flattened keys [H_kv·D] (bins may straddle heads when M ∤ D).
            float* flat = ctx.K(b);
            long length = (long)_kvHeads * d, bins = (long)_kvHeads * m;
            for (int j = 0; j < m; j++)
            {
                long bin = (long)kvHead * m + j;
                long from = bin * length / bins, to = ((bin + 1) * length + bins - 1) / bins;
                float sum = 0;
                for (long i = from; i < to; i++)
                    sum += flat[i];
                pooled[j] = sum / (to - from);
            }
        }

        for (int j = 0; j < m; j++)
        {
            float g = VectorOps.LogSigmoid(pooled[j]) / _normalizer;
            alpha[j] = MathF.Exp(g);
            write[j] = 1 - alpha[j];
        }

        // Pass 1: Hk = Hk ⊙ (1 αᵀ) + kᵀ s; p = softmax(scale · q Hk).
        new Span<float>(p, m).Clear();
        VectorOps.Prefetch((byte*)hk, EngineMixer.StatePrefetchBytes);
        for (int c = 0; c < d; c++)
        {
            float* row = hk + (long)c * m;
            VectorOps.Prefetch((byte*)row + EngineMixer.StatePrefetchBytes, m * sizeof(float));
            for (int j = 0; j < m; j++)
                row[j] = row[j] * alpha[j] + k[c] * write[j];
            VectorOps.Axpy(q[c], row, p, m);
        }

        for (int j = 0; j < m; j++)
            p[j] *= _scale;
        VectorOps.Softmax(p, m);

        // Pass 2: Hv = Diag(α) Hv + sᵀ v; o = p Hv.
        new Span<float>(output, d).Clear();
        VectorOps.Prefetch((byte*)hv, EngineMixer.StatePrefetchBytes);
        for (int j = 0; j < m; j++)
        {
            float* row = hv + (long)j * d;
            VectorOps.Prefetch((byte*)row + EngineMixer.StatePrefetchBytes, d * sizeof(float));
            DecayWrite(row, alpha[j], write[j], v, d);
            VectorOps.Axpy(p[j], row, output, d);
        }
    }

    /// <summary><c>row = row · e + kc · v</c>, in that rounding order (as the TorchSharp step: multiply, multiply, add).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecayWrite(float* row, float e, float kc, float* v, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var ev = Vector512.Create(e);
            var kv = Vector512.Create(kc);
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(row + i) * ev + kv * Vector512.Load(v + i)).Store(row + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            // Lane by lane the same three roundings, so every width gives the scalar loop's bits.
            var ev = Vector256.Create(e);
            var kv = Vector256.Create(kc);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(row + i) * ev + kv * Vector256.Load(v + i)).Store(row + i);
        }

        for (; i < n; i++)
            row[i] = row[i] * e + kc * v[i];
    }

    private static void Copy(float* from, float* to, int n) => Buffer.MemoryCopy(from, to, n * sizeof(float), n * sizeof(float));
}
