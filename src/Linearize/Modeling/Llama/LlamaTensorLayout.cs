using Linearize.Checkpoints.Configuration;

namespace Linearize.Modeling.Llama;

/// <summary>
/// The parameters of a Llama-family teacher by Hugging Face name and shape, computed from its config alone — what
/// <see cref="LlamaForCausalLM"/> would allocate, without allocating it. Lets a checkpoint larger than memory be
/// written tensor by tensor; a test holds it equal to the model's own <c>named_parameters</c>.
/// </summary>
public static class LlamaTensorLayout
{
    /// <summary>Every parameter as (name, shape), in ordinal name order.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> For(LlamaConfig c)
    {
        long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        var result = new List<(string, long[])> { ("model.embed_tokens.weight", new[] { (long)c.VocabSize, hidden }), ("model.norm.weight", new[] { hidden }) };
        if (!c.TieWordEmbeddings)
            result.Add(("lm_head.weight", new[] { (long)c.VocabSize, hidden }));
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            result.Add((p + "input_layernorm.weight", new[] { hidden }));
            result.Add((p + "post_attention_layernorm.weight", new[] { hidden }));
            foreach (var (name, rows, cols, bias) in new[]
                     {
                         ("self_attn.q_proj", q, hidden, c.QkvBias), ("self_attn.k_proj", kv, hidden, c.QkvBias),
                         ("self_attn.v_proj", kv, hidden, c.QkvBias), ("self_attn.o_proj", hidden, q, c.OutputBias),
                         ("mlp.gate_proj", (long)c.IntermediateSize, hidden, c.MlpBias), ("mlp.up_proj", (long)c.IntermediateSize, hidden, c.MlpBias),
                         ("mlp.down_proj", hidden, (long)c.IntermediateSize, c.MlpBias),
                     })
            {
                result.Add((p + name + ".weight", new[] { rows, cols }));
                if (bias)
                    result.Add((p + name + ".bias", new[] { rows }));
            }
        }

        return result.OrderBy(x => x.Item1, StringComparer.Ordinal).ToArray();
    }

    /// <summary>Bytes of all parameters at <paramref name="elementSize"/> bytes each.</summary>
    public static long Bytes(LlamaConfig c, int elementSize) =>
        For(c).Sum(x => x.Shape.Aggregate(1L, (a, b) => a * b)) * elementSize;
}
