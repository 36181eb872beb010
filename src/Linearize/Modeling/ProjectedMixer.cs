using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling.Llama;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>
/// A token mixer built on the teacher's four attention projections under their Hugging Face names
/// (<c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>), so every mixer — softmax, sliding window, Liger — loads the
/// teacher's weights unchanged. Fields are protected so that <c>RegisterComponents()</c> in the derived class sees them.
/// </summary>
public abstract class ProjectedMixer : TokenMixer, IProjectionHost
{
    // Not readonly: LoRA injection and merging swap them (see IProjectionHost).
    [ComponentName(Name = "q_proj")]
    protected nn.Module<Tensor, Tensor> QProj;
    [ComponentName(Name = "k_proj")]
    protected nn.Module<Tensor, Tensor> KProj;
    [ComponentName(Name = "v_proj")]
    protected nn.Module<Tensor, Tensor> VProj;
    [ComponentName(Name = "o_proj")]
    protected nn.Module<Tensor, Tensor> OProj;

    protected ProjectedMixer(string name, LlamaConfig config, int layerIndex) : base(name, layerIndex)
    {
        Heads = config.NumAttentionHeads;
        KvHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        QProj = nn.Linear(config.HiddenSize, Heads * HeadDim, hasBias: config.QkvBias);
        KProj = nn.Linear(config.HiddenSize, KvHeads * HeadDim, hasBias: config.QkvBias);
        VProj = nn.Linear(config.HiddenSize, KvHeads * HeadDim, hasBias: config.QkvBias);
        OProj = nn.Linear(Heads * HeadDim, config.HiddenSize, hasBias: config.OutputBias);
    }

    public IReadOnlyList<string> ProjectionNames { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public nn.Module<Tensor, Tensor> GetProjection(string name) => name switch
    {
        "q_proj" => QProj,
        "k_proj" => KProj,
        "v_proj" => VProj,
        "o_proj" => OProj,
        _ => throw new ArgumentException($"no projection '{name}'"),
    };

    public void SetProjection(string name, nn.Module<Tensor, Tensor> module)
    {
        _ = GetProjection(name);
        register_module(name, null!); // unregister the old module, then register the new one under the same name
        register_module(name, module);
        switch (name)
        {
            case "q_proj": QProj = module; break;
            case "k_proj": KProj = module; break;
            case "v_proj": VProj = module; break;
            default: OProj = module; break;
        }
    }

    protected int Heads { get; }

    protected int KvHeads { get; }

    protected int HeadDim { get; }

    /// <summary>The raw projections of <paramref name="x"/> <c>[B, T, C]</c>: q <c>[B, T, H, D]</c>, k and v <c>[B, T, H_kv, D]</c>
    /// (before RoPE and any feature map).</summary>
    protected (Tensor Q, Tensor K, Tensor V) Project(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        // call, PyTorch's module(x), not forward: a module's hooks run (ActivationRounding rounds projection inputs).
        return (QProj.call(x).view(b, t, Heads, HeadDim),
            KProj.call(x).view(b, t, KvHeads, HeadDim),
            VProj.call(x).view(b, t, KvHeads, HeadDim));
    }

    /// <summary>Heads-first, RoPE applied: <c>[B, T, H, D] → [B, H, T, D]</c>.</summary>
    protected static Tensor Rotate(Tensor x, AttentionContext ctx) => RotaryEmbedding.Apply(x.transpose(1, 2), ctx.Cos, ctx.Sin);

    /// <summary>Merges heads <c>[B, T, H, D]</c> and applies <c>o_proj</c> in the weights' dtype.</summary>
    protected Tensor Output(Tensor heads, ScalarType dtype)
    {
        long b = heads.shape[0], t = heads.shape[1];
        return OProj.call(heads.reshape(b, t, Heads * HeadDim).to(dtype));
    }

    /// <summary>Which of the T new positions are real tokens, <c>[B, T]</c> bool (all true without padding).</summary>
    protected static Tensor NewTokenValidity(AttentionContext ctx, long b, long t, Device device) =>
        ctx.KeyPadding is null
            ? ones(b, t, dtype: ScalarType.Bool, device: device)
            : ctx.KeyPadding.narrow(1, ctx.KeyPadding.shape[1] - t, t);
}
