using Linearize.Checkpoints.Configuration;

namespace Linearize.Checkpoints;

/// <summary>
/// Where each tensor of a llama2.c v0 <c>.bin</c> lies, by Hugging Face name, read from the 28-byte header alone
/// (<see cref="Llama2cCheckpoint.ReadLayout"/>): what lets the engine map the file instead of loading it. Offsets are in
/// bytes from the file's start; a layer's slice of a stacked llama2.c array is that layer's tensor. q and k are stored
/// with llama2.c's interleaved RoPE pairs, so their rows must be permuted on reading (<see cref="SourceRow"/>).
/// </summary>
public sealed class Llama2cLayout
{
    internal Llama2cLayout(LlamaConfig config, Dictionary<string, (long Offset, long[] Shape)> tensors, int heads, int kvHeads)
    {
        Config = config;
        _tensors = tensors;
        _heads = heads;
        _kvHeads = kvHeads;
    }

    private readonly Dictionary<string, (long Offset, long[] Shape)> _tensors;
    private readonly int _heads, _kvHeads;

    /// <summary>The configuration the header describes (as <see cref="Llama2cCheckpoint"/> builds it).</summary>
    public LlamaConfig Config { get; }

    /// <summary>Every tensor under its Hugging Face name.</summary>
    public IEnumerable<string> Names => _tensors.Keys;

    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>Byte offset of tensor <paramref name="name"/> in the file and its HF shape.</summary>
    public (long Offset, long[] Shape) Locate(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no tensor {name} in the llama2.c layout");

    /// <summary>Whether <paramref name="name"/>'s rows are stored in another order than HF's (q and k).</summary>
    public bool IsPermuted(string name) => name.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal) ||
                                          name.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal);

    /// <summary>How many heads tensor <paramref name="name"/>'s rows hold (q: attention heads, k: key/value heads), for
    /// <see cref="Llama2cCheckpoint.InterleavedToRotateHalf"/>.</summary>
    internal int HeadsOf(string name) => name.EndsWith(".q_proj.weight", StringComparison.Ordinal) ? _heads : _kvHeads;

    /// <summary>The stored row holding HF row <paramref name="row"/> of tensor <paramref name="name"/>: for q and k,
    /// HF row <c>h·d + p·d/2 + i</c> is llama2.c row <c>h·d + 2i + p</c> (<see cref="Llama2cCheckpoint.InterleavedToRotateHalf"/>).</summary>
    public long SourceRow(string name, long row)
    {
        if (!IsPermuted(name))
            return row;
        long rows = Locate(name).Shape[0];
        long d = rows / HeadsOf(name);
        long head = row / d, within = row % d, half = d / 2;
        long p = within / half, i = within % half;
        return head * d + 2 * i + p;
    }
}
