using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>SwiGLU feed-forward (HF <c>LlamaMLP</c>): <c>down(silu(gate(x)) * up(x))</c>. <c>[B, T, C] → [B, T, C]</c>.</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")]
    private readonly Linear _gateProj;
    [ComponentName(Name = "up_proj")]
    private readonly Linear _upProj;
    [ComponentName(Name = "down_proj")]
    private readonly Linear _downProj;

    public LlamaMlp(int hidden, int intermediate, bool bias) : base(nameof(LlamaMlp))
    {
        _gateProj = nn.Linear(hidden, intermediate, hasBias: bias);
        _upProj = nn.Linear(hidden, intermediate, hasBias: bias);
        _downProj = nn.Linear(intermediate, hidden, hasBias: bias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.silu(_gateProj.forward(x)) * _upProj.forward(x);
        return _downProj.forward(h).MoveToOuterDisposeScope();
    }
}
