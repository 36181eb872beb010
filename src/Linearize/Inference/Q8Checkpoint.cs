using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Linearize.Checkpoints.Configuration;

namespace Linearize.Inference;

/// <summary>
/// The engine's q8 checkpoint, written by <c>linearize quantize</c>: a Hugging Face directory whose matrices the engine
/// packs are stored already in <see cref="WeightFormat.Q8"/>, so the engine maps them in place instead of quantizing
/// billions of weights at every start. Each such matrix <c>NAME</c> <c>[rows, cols]</c> is stored as one tensor,
/// exactly <see cref="PackedMatrix"/>'s Q8 rows: <c>NAME.q8</c>, U8 <c>[rows, 4 · ceil(cols / 32) + cols]</c>, each row
/// its float32 block scales (little-endian, one per block of 32 columns; llama.cpp's Q8_0 rule, docs/ARCHITECTURE.md
/// "Q8 numerics") beside its int8 quants in groups of 16 blocks (<see cref="Q8RowLayout"/>). <c>cols</c> is the one
/// width that gives that row length (<see cref="Q8RowLayout.ColsFromRowBytes"/>). Every other tensor (norms, added parameters) is stored as it was. config.json says
/// so the way Hugging Face marks quantized checkpoints: <c>"quantization_config": {"quant_method": "linearize-q8",
/// "block_size": 32, "layout": "grouped-rows"}</c>. Only the engine runs it; TorchSharp paths refuse it (<see cref="Refuse"/>).
/// An earlier layout kept the quants (<c>NAME.q8</c>, I8) and scales (<c>NAME.q8_scales</c>) apart; such a checkpoint
/// is refused with the command that rewrites it.
/// </summary>
public static partial class Q8Checkpoint
{
    /// <summary>The <c>quantization_config.quant_method</c> of this format.</summary>
    public const string QuantMethod = "linearize-q8";

    /// <summary>The tensor holding matrix <paramref name="name"/>'s Q8 rows.</summary>
    public static string RowsName(string name) => name + ".q8";

    /// <summary>The scales tensor of the earlier layout, which kept them apart from the quants (refused when found).</summary>
    public static string SeparateScalesName(string name) => name + ".q8_scales";

    /// <summary>True for the matrices the engine packs (<see cref="DecodeEngine"/>): the embedding, the LM head and each
    /// layer's projections. Those are the ones quantized; anything else keeps its stored type.</summary>
    public static bool IsEngineMatrix(string name) => EngineMatrix().IsMatch(name);

    /// <summary>True when <paramref name="config"/> marks a q8 checkpoint.</summary>
    public static bool IsQuantized(LlamaConfig config) =>
        config.Raw["quantization_config"] is JsonObject q && q["quant_method"] is JsonValue m && m.TryGetValue(out string? s) && s == QuantMethod;

    /// <summary>The <c>quantization_config</c> written into a q8 checkpoint's config.json.</summary>
    public static JsonObject QuantizationConfig() =>
        new() { ["quant_method"] = QuantMethod, ["block_size"] = PackedMatrix.Q8BlockSize, ["layout"] = "grouped-rows" };

    /// <summary>Throws for a q8 checkpoint at <paramref name="source"/>: TorchSharp builds float32 (or bfloat16) modules
    /// from the stored weights, which this format no longer holds.</summary>
    public static void Refuse(LlamaConfig config, string source, string what)
    {
        if (IsQuantized(config))
            throw new LinearizeException($"{source}: a q8 engine checkpoint (written by 'linearize quantize') runs on the engine only " +
                                         $"(generate, chat, serve, bench, eval); {what} needs the model it was quantized from");
    }

    [GeneratedRegex(@"^(model\.embed_tokens|lm_head|model\.layers\.\d+\.(self_attn\.[qkvobg]_proj|mlp\.(gate|up|down)_proj))\.weight$")]
    private static partial Regex EngineMatrix();
}
