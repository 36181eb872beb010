using System.Text.Json.Nodes;
using TorchSharp;
using Linearize.Checkpoints.Configuration;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// Reads karpathy/llama2.c's legacy (v0) <c>.bin</c> checkpoint: seven int32 header fields
/// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier
/// is not tied to the embedding), then float32 weights in llama2.c order, including the unused RoPE tables.
/// Converts it to Hugging Face names and layout, permuting q/k rows from llama2.c's interleaved RoPE pairs
/// <c>(2i, 2i+1)</c> to rotate_half pairs <c>(i, i + d/2)</c>, as transformers' <c>convert_llama_weights_to_hf.py</c> does.
/// </summary>
/// <remarks>Layout follows llama2.c <c>run.c</c> <c>memory_map_weights</c> (commit 350e04f).</remarks>
public sealed class Llama2cCheckpoint
{
    private const int HeaderInts = 7;
    private const double Llama2cRmsNormEps = 1e-5;   // run.c rmsnorm: ss / size + 1e-5f
    private const double Llama2cRopeTheta = 10000.0; // run.c: powf(10000.0f, head_dim / (float)head_size)

    private Llama2cCheckpoint(LlamaConfig config, Dictionary<string, Tensor> tensors)
    {
        Config = config;
        Tensors = tensors;
    }

    public LlamaConfig Config { get; }

    /// <summary>Weights under Hugging Face names, float32, in HF layout.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>True when the first bytes look like a llama2.c v0 header (seven plausible int32 fields).</summary>
    public static bool LooksLikeLlama2c(string path)
    {
        try
        {
            using var s = File.OpenRead(path);
            if (s.Length < HeaderInts * 4)
                return false;
            var h = new int[HeaderInts];
            using var r = new BinaryReader(s);
            for (int i = 0; i < HeaderInts; i++)
                h[i] = r.ReadInt32();
            return h[0] > 0 && h[1] > 0 && h[2] > 0 && h[3] > 0 && h[4] > 0 && h[5] != 0 && h[6] > 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The configuration of a llama2.c file, from its header alone.</summary>
    public static LlamaConfig LoadConfig(string path) => ReadLayout(path).Config;

    /// <summary>Where every tensor of a llama2.c file lies (from the header, checked against the file's size).</summary>
    public static Llama2cLayout ReadLayout(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        using var stream = File.OpenRead(path);
        return ReadHeader(path, stream);
    }

    /// <summary>Reads and checks the header and places every tensor.</summary>
    private static Llama2cLayout ReadHeader(string path, Stream stream)
    {
        long fileLength = stream.Length;
        if (fileLength < HeaderInts * 4)
            throw new CheckpointFormatException(path, $"truncated: {fileLength} bytes is shorter than the 28-byte llama2.c header");
        var reader = new BinaryReader(stream);
        int magic = BitConverter.ToInt32(BitConverter.GetBytes(0x616b3432));
        var header = new int[HeaderInts];
        for (int i = 0; i < HeaderInts; i++)
            header[i] = reader.ReadInt32();
        if (header[0] == magic)
            throw new CheckpointFormatException(path, $"llama2.c export format version {header[1]} is not supported (only the legacy v0 format)");

        int dim = header[0], hidden = header[1], layers = header[2], heads = header[3], kvHeads = header[4];
        int signedVocab = header[5], seqLen = header[6];
        bool shared = signedVocab > 0;
        int vocab = Math.Abs(signedVocab);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab == 0 || seqLen <= 0 ||
            dim % heads != 0 || heads % kvHeads != 0)
            throw new CheckpointFormatException(path,
                $"implausible llama2.c header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv_heads {kvHeads}, vocab {signedVocab}, seq_len {seqLen})");
        int headSize = dim / heads;
        int kvDim = kvHeads * headSize;

        long floats = (long)vocab * dim + (long)layers * dim * 2 + (long)layers * dim * dim * 2 + (long)layers * dim * kvDim * 2 +
                      (long)layers * dim * hidden * 3 + dim + (long)seqLen * headSize + (shared ? 0 : (long)vocab * dim);
        long expected = HeaderInts * 4 + floats * 4;
        if (fileLength != expected)
            throw new CheckpointFormatException(path,
                $"size {fileLength} bytes does not match the header's shapes ({expected} bytes expected); the file is truncated or not a llama2.c v0 checkpoint");

        // run.c's memory_map_weights order: each array stacks every layer's tensor.
        var tensors = new Dictionary<string, (long Offset, long[] Shape)>();
        long at = HeaderInts * 4;
        long Next(long count) { long start = at; at += count * 4; return start; }
        void Stacked(string suffix, params long[] shape)
        {
            long each = shape.Aggregate(1L, (a, b) => a * b), start = Next(layers * each);
            for (int l = 0; l < layers; l++)
                tensors[$"model.layers.{l}.{suffix}"] = (start + l * each * 4, shape);
        }

        tensors["model.embed_tokens.weight"] = (Next((long)vocab * dim), new long[] { vocab, dim });
        Stacked("input_layernorm.weight", dim);
        Stacked("self_attn.q_proj.weight", dim, dim);
        Stacked("self_attn.k_proj.weight", kvDim, dim);
        Stacked("self_attn.v_proj.weight", kvDim, dim);
        Stacked("self_attn.o_proj.weight", dim, dim);
        Stacked("post_attention_layernorm.weight", dim);
        Stacked("mlp.gate_proj.weight", hidden, dim);
        Stacked("mlp.down_proj.weight", dim, hidden);
        Stacked("mlp.up_proj.weight", hidden, dim);
        tensors["model.norm.weight"] = (Next(dim), new long[] { dim });
        Next((long)seqLen * headSize); // freq_cis_real + freq_cis_imag: recomputed from theta
        if (!shared)
            tensors["lm_head.weight"] = (Next((long)vocab * dim), new long[] { vocab, dim });

        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = dim,
            ["intermediate_size"] = hidden,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["vocab_size"] = vocab,
            ["max_position_embeddings"] = seqLen,
            ["rms_norm_eps"] = Llama2cRmsNormEps,
            ["rope_theta"] = Llama2cRopeTheta,
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = shared,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
            ["torch_dtype"] = "float32",
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
        };
        return new Llama2cLayout(LlamaConfig.FromJson(json, path), tensors, heads, kvHeads);
    }

    /// <summary>Every tensor of <paramref name="path"/> in memory at once (<see cref="Llama2cTensorSource"/> reads one at
    /// a time, which is what building a model needs).</summary>
    public static Llama2cCheckpoint Load(string path)
    {
        var source = new Llama2cTensorSource(path);
        var raw = new Dictionary<string, Tensor>();
        try
        {
            foreach (string name in source.Names)
                raw[name] = source.Read(name);
        }
        catch
        {
            foreach (var t in raw.Values)
                t.Dispose();
            throw;
        }

        return new Llama2cCheckpoint(source.Config, raw);
    }

    /// <summary>
    /// Row permutation for one projection <c>[heads·d, C]</c>: llama2.c rotates pairs <c>(2i, 2i+1)</c> of each head, HF
    /// rotates <c>(i, i + d/2)</c>; HF row <c>p·d/2 + i</c> takes llama2.c row <c>2i + p</c>
    /// (<c>w.view(h, d/2, 2, C).transpose(1, 2)</c>).
    /// </summary>
    public static Tensor InterleavedToRotateHalf(Tensor w, int heads)
    {
        long rows = w.shape[0], cols = w.shape[1];
        long d = rows / heads;
        return w.reshape(heads, d / 2, 2, cols).transpose(1, 2).reshape(rows, cols).contiguous();
    }

    /// <summary>Adapts the converted tensors for <see cref="StateDictLoader"/>.</summary>
    public StateDictLoader.ITensorSource AsSource(string description) =>
        new StateDictLoader.DictionarySource(description, Tensors);
}
