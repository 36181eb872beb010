using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>
/// A module whose named linear projections can be swapped (for a LoRA wrapper, or back to a merged linear layer)
/// — the injection point PEFT finds by module name.
/// </summary>
public interface IProjectionHost
{
    /// <summary>Names of the swappable projections, e.g. <c>q_proj</c>.</summary>
    IReadOnlyList<string> ProjectionNames { get; }

    nn.Module<Tensor, Tensor> GetProjection(string name);

    void SetProjection(string name, nn.Module<Tensor, Tensor> module);
}
