using Linearize.Checkpoints.Configuration;
using Linearize.Checkpoints;
using Linearize.Modeling.Llama;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Interchange;

/// <summary>
/// Writes a model as a llama2.c legacy (v0) <c>.bin</c> — the inverse of <see cref="Llama2cCheckpoint.Load"/> — so
/// <c>run.c</c> can run the very weights this toolkit benchmarks. Header of seven int32 (dim, hidden_dim, n_layers,
/// n_heads, n_kv_heads, vocab_size — negative when the head is not tied — and seq_len), then float32 tensors in
/// llama2.c's order (<c>export.py legacy_export</c>), q/k rows permuted back to interleaved RoPE pairs.
/// </summary>
public static class Llama2cWriter
{
    public static void Write(LlamaForCausalLM model, string path)
    {
        var c = model.Config;
        if (c.QkvBias || c.OutputBias || c.MlpBias || c.RopeScaling.Type != RopeScalingType.None || Math.Abs(c.RopeTheta - 10000.0) > 1e-9 ||
            c.HeadDim * c.NumAttentionHeads != c.HiddenSize || Linearize.Checkpoints.Configuration.LinearizationConfig.FromModel(c) is not null)
            throw new LinearizeException(
                $"{path}: llama2.c's format holds only plain Llama models (no biases, RoPE θ = 10000 without scaling, head_dim = dim / heads, not converted)");
        var state = model.state_dict();
        Tensor Get(string name) => state[name].detach().to(ScalarType.Float32).contiguous();
        int layers = c.NumHiddenLayers;
        Tensor Stack(string suffix, Func<Tensor, Tensor>? map = null) =>
            torch.stack(Enumerable.Range(0, layers).Select(l => (map ?? (t => t))(Get($"model.layers.{l}.{suffix}"))).ToArray());

        AtomicFile.Write(path, stream =>
        {
            using var scope = NewDisposeScope();
            using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            foreach (int v in new[] { c.HiddenSize, c.IntermediateSize, layers, c.NumAttentionHeads, c.NumKeyValueHeads,
                         c.TieWordEmbeddings ? c.VocabSize : -c.VocabSize, c.MaxPositionEmbeddings })
                w.Write(v);
            void Put(Tensor t) => w.Write(t.contiguous().bytes);
            Put(Get("model.embed_tokens.weight"));
            Put(Stack("input_layernorm.weight"));
            Put(Stack("self_attn.q_proj.weight", t => RotateHalfToInterleaved(t, c.NumAttentionHeads)));
            Put(Stack("self_attn.k_proj.weight", t => RotateHalfToInterleaved(t, c.NumKeyValueHeads)));
            Put(Stack("self_attn.v_proj.weight"));
            Put(Stack("self_attn.o_proj.weight"));
            Put(Stack("post_attention_layernorm.weight"));
            Put(Stack("mlp.gate_proj.weight"));
            Put(Stack("mlp.down_proj.weight"));
            Put(Stack("mlp.up_proj.weight"));
            Put(Get("model.norm.weight"));
            // freq_cis_real / freq_cis_imag [seq_len, head_size / 2] (run.c recomputes them; written for completeness).
            using var exponents = TorchArithmetic.Arange(0, c.HeadDim, 2, ScalarType.Float32).Over(c.HeadDim);
            using var baseValue = torch.tensor(10000f);
            var freqs = torch.pow(baseValue, exponents).reciprocal();
            var angles = torch.outer(TorchArithmetic.Arange(c.MaxPositionEmbeddings, ScalarType.Float32), freqs);

            Put(angles.cos());
            Put(angles.sin());
            if (!c.TieWordEmbeddings)
                Put(Get("lm_head.weight"));
        });
    }

    /// <summary>Inverse of <see cref="Llama2cCheckpoint.InterleavedToRotateHalf"/>: HF row <c>p·d/2 + i</c> goes back to
    /// llama2.c row <c>2i + p</c>.</summary>
    public static Tensor RotateHalfToInterleaved(Tensor w, int heads)
    {
        long rows = w.shape[0], cols = w.shape[1];
        long d = rows / heads;
        return w.reshape(heads, 2, d / 2, cols).transpose(1, 2).reshape(rows, cols).contiguous();
    }
}
