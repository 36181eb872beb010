using Linearize.Checkpoints.Configuration;
using Linearize.Inference.Mixers;

namespace Linearize.Inference;

/// <summary>
/// How the engine gets its weights from an <see cref="IWeightSource"/>, tensor by tensor: each matrix in
/// <see cref="EngineOptions.Weights"/>, used in place where the source already maps it in that format, otherwise packed a
/// block of rows at a time through one float32 staging buffer, so packing never holds a second full copy of a matrix;
/// q|k|v (with a delta-rule layer's β rows and a learned gate's rows) and gate|up fused.
/// </summary>
internal static unsafe class EngineWeightPacking
{
    /// <summary>Layer <paramref name="i"/>'s norms, fused q|k|v (with a delta-rule layer's β rows and a learned gate's
    /// rows after them), o_proj, fused gate|up and down, running <paramref name="mixer"/>.</summary>
    public static EngineLayer Layer(LlamaConfig c, IWeightSource weights, int i, EngineOptions options, EngineMixer mixer)
    {
        string p = $"model.layers.{i}.";
        // A delta-rule layer's b_proj [H, C] reads the same normed input as q/k/v: its rows join the fused matrix, so
        // the β logits come out of the same pass after v (StepContext.BetaLogits); b_proj has no bias.
        bool delta = weights.Contains(p + "self_attn.b_proj.weight");
        var qkv = new[] { p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight" };
        var qkvBias = Concat(weights, p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias");
        if (delta)
        {
            qkv = qkv.Append(p + "self_attn.b_proj.weight").ToArray();
            qkvBias = qkvBias?.Concat(new float[c.NumAttentionHeads]).ToArray();
        }

        // A learned-gate layer's g_proj [H, C] (with bias) likewise, after the β logits (StepContext.GateLogits).
        if (weights.Contains(p + "self_attn.g_proj.weight"))
        {
            Require(weights, p + "self_attn.g_proj.bias");
            int before = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim + (delta ? c.NumAttentionHeads : 0);
            qkv = qkv.Append(p + "self_attn.g_proj.weight").ToArray();
            qkvBias = (qkvBias ?? new float[before]).Concat(weights.ReadFloats(p + "self_attn.g_proj.bias")).ToArray();
        }

        return new EngineLayer
        {
            AttentionNorm = Vector(weights, p + "input_layernorm.weight")!,
            Qkv = Matrix(weights, qkv, options),
            QkvBias = qkvBias,
            Output = Matrix(weights, p + "self_attn.o_proj.weight", options),
            OutputBias = Vector(weights, p + "self_attn.o_proj.bias", optional: true),
            MlpNorm = Vector(weights, p + "post_attention_layernorm.weight")!,
            GateUp = Matrix(weights, new[] { p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight" }, options),
            GateUpBias = Concat(weights, p + "mlp.gate_proj.bias", p + "mlp.up_proj.bias"),
            Down = Matrix(weights, p + "mlp.down_proj.weight", options),
            DownBias = Vector(weights, p + "mlp.down_proj.bias", optional: true),
            Mixer = mixer,
        };
    }

    private static void Require(IWeightSource weights, string name)
    {
        if (weights.Contains(name))
            return;
        string hint = weights.Names.Any(k => k.Contains("lora_", StringComparison.Ordinal))
            ? " (the model holds unmerged LoRA adapters: merge them first with 'linearize merge')"
            : "";
        throw new LinearizeException($"decode engine: {weights.Source} has no tensor '{name}'{hint}");
    }

    /// <summary>One named <c>[rows, C]</c> matrix (<see cref="Matrix(IWeightSource, string[], EngineOptions)"/>).</summary>
    public static PackedMatrix Matrix(IWeightSource weights, string name, EngineOptions options) => Matrix(weights, new[] { name }, options);

    /// <summary>
    /// The named <c>[rows_i, C]</c> matrices as one, in <see cref="EngineOptions.Weights"/>: each used in place where the
    /// source maps it in that format already (<see cref="EngineOptions.WeightsInPlace"/>), the rest packed a block of rows
    /// at a time. With no part in place the parts are packed into one fused buffer; otherwise they are stacked, so no
    /// in-place part is ever copied.
    /// </summary>
    public static PackedMatrix Matrix(IWeightSource weights, string[] names, EngineOptions options)
    {
        foreach (var n in names)
            Require(weights, n);
        var shapes = names.Select(weights.Shape).ToArray();
        if (shapes.Any(s => s.Length != 2 || s[1] != shapes[0][1]))
            throw new LinearizeException($"decode engine: {weights.Source}: {string.Join(", ", names)} must be matrices with the same columns");
        var format = options.Weights;
        // The batched kernels take rows in pairs: parts whose boundaries keep that pairing (every part but the last has
        // even rows, as every real model's do) compute each row exactly as the fused copy would.
        bool stackable = shapes.SkipLast(1).All(s => s[0] % 2 == 0);
        var addresses = names.Select(n => options.WeightsInPlace && stackable ? (nint)weights.MapInPlace(n, format) : 0).ToArray();
        if (addresses.All(a => a == 0))
            return PackStaged(weights, names, shapes, format);
        var parts = new List<PackedMatrix>();
        try
        {
            for (int i = 0; i < names.Length; i++)
                parts.Add(addresses[i] != 0
                    ? PackedMatrix.InPlace((int)shapes[i][0], (int)shapes[i][1], format, (void*)addresses[i])
                    : PackStaged(weights, new[] { names[i] }, new[] { shapes[i] }, format));
            return parts.Count == 1 ? parts[0] : PackedMatrix.Stack(parts.ToArray());
        }
        catch
        {
            foreach (var p in parts)
                p.Dispose();
            throw;
        }
    }

    /// <summary>Staging rows per block when packing: ~16 MiB of float32 whatever the matrix, so packing holds the packed
    /// weights and one block, never a whole matrix in float32 (an 8B model's embedding is 2 GiB of it).</summary>
    internal const long StagingFloats = 4L << 20;

    /// <summary>Reads each part a block of rows at a time into one float32 staging buffer and packs the block.</summary>
    private static PackedMatrix PackStaged(IWeightSource weights, string[] names, long[][] shapes, WeightFormat format)
    {
        int cols = (int)shapes[0][1];
        int rows = (int)shapes.Sum(x => x[0]);
        var matrix = PackedMatrix.Allocate(rows, cols, format);
        try
        {
            // bfloat16 stored, bfloat16 packed: the bits are copied as they are (widening and rounding back would be
            // the identity).
            if (format == WeightFormat.BFloat16 && names.All(weights.HasBFloat16))
                StageBlocks<ushort>(names, shapes, cols, weights.ReadBFloat16Into, matrix.PackRowsBFloat16);
            else if (format == WeightFormat.Q8 && names.All(n => weights.MapInPlace(n, format) != null))
            {
                // A q8 checkpoint copied (--no-mmap): its rows as stored, not dequantized and quantized again.
                int row = 0;
                foreach (var (n, shape) in names.Zip(shapes))
                {
                    int partRows = (int)shape[0];
                    matrix.PackRowsQ8(row, new ReadOnlySpan<byte>(weights.MapInPlace(n, format), checked((int)(partRows * matrix.Q8RowBytes))));
                    row += partRows;
                }
            }
            else
                StageBlocks<float>(names, shapes, cols, weights.ReadInto, matrix.PackRows);
            return matrix;
        }
        catch
        {
            matrix.Dispose();
            throw;
        }
    }

    private delegate void BlockReader<T>(string name, long offset, Span<T> destination);

    private delegate void BlockPacker<T>(int firstRow, ReadOnlySpan<T> rows);

    /// <summary>Feeds every part's rows, a block of about <see cref="StagingFloats"/> elements at a time, through one
    /// staging buffer: read into it, then packed at the matrix's next row.</summary>
    private static void StageBlocks<T>(string[] names, long[][] shapes, int cols, BlockReader<T> read, BlockPacker<T> pack)
    {
        int blockRows = (int)Math.Max(1, StagingFloats / cols);
        var staging = GC.AllocateUninitializedArray<T>(blockRows * cols);
        int row = 0;
        foreach (var (n, shape) in names.Zip(shapes))
            for (long r = 0; r < shape[0]; r += blockRows)
            {
                int count = (int)Math.Min(blockRows, shape[0] - r);
                var block = staging.AsSpan(0, count * cols);
                read(n, r * cols, block);
                pack(row, block);
                row += count;
            }
    }

    /// <summary>A named vector (a norm's weight, a bias) as float32; null when <paramref name="optional"/> and absent.</summary>
    public static float[]? Vector(IWeightSource weights, string name, bool optional = false)
    {
        if (weights.Contains(name))
            return weights.ReadFloats(name);
        if (optional)
            return null;
        Require(weights, name);
        return null;
    }

    private static float[]? Concat(IWeightSource weights, params string[] names)
    {
        if (!names.Any(weights.Contains))
            return null;
        foreach (var n in names)
            Require(weights, n);
        return names.SelectMany(weights.ReadFloats).ToArray();
    }
}
