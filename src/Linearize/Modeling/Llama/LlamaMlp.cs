using Linearize.Modeling;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>SwiGLU feed-forward (HF <c>LlamaMLP</c>): <c>down(silu(gate(x)) * up(x))</c>. <c>[B, T, C] → [B, T, C]</c>.</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>, IProjectionHost
{
    // Not readonly: LoRA injection and merging swap them (see IProjectionHost).
    [ComponentName(Name = "gate_proj")]
    private nn.Module<Tensor, Tensor> _gateProj;
    [ComponentName(Name = "up_proj")]
    private nn.Module<Tensor, Tensor> _upProj;
    [ComponentName(Name = "down_proj")]
    private nn.Module<Tensor, Tensor> _downProj;

    public LlamaMlp(int hidden, int intermediate, bool bias) : base(nameof(LlamaMlp))
    {
        _gateProj = nn.Linear(hidden, intermediate, hasBias: bias);
        _upProj = nn.Linear(hidden, intermediate, hasBias: bias);
        _downProj = nn.Linear(intermediate, hidden, hasBias: bias);
        RegisterComponents();
    }

    public IReadOnlyList<string> ProjectionNames { get; } = new[] { "gate_proj", "up_proj", "down_proj" };

    public nn.Module<Tensor, Tensor> GetProjection(string name) => name switch
    {
        "gate_proj" => _gateProj,
        "up_proj" => _upProj,
        "down_proj" => _downProj,
        _ => throw new ArgumentException($"no projection '{name}'"),
    };

    public void SetProjection(string name, nn.Module<Tensor, Tensor> module)
    {
        _ = GetProjection(name);
        register_module(name, null!);
        register_module(name, module);
        switch (name)
        {
            case "gate_proj": _gateProj = module; break;
            case "up_proj": _upProj = module; break;
            default: _downProj = module; break;
        }
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.silu(_gateProj.call(x)) * _upProj.call(x);
        return _downProj.call(h).MoveToOuterDisposeScope();
    }
}
