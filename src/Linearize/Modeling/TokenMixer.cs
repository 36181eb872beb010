using static TorchSharp.torch;

namespace Linearize.Modeling;

/// <summary>
/// The sequence-mixing sub-layer of a decoder block (HF's <c>self_attn</c>): softmax attention in the teacher,
/// or a linear / hybrid replacement after conversion. Maps hidden states <c>[B, T, C]</c> to <c>[B, T, C]</c>.
/// </summary>
public abstract class TokenMixer : nn.Module<Tensor, AttentionContext, Tensor>
{
    protected TokenMixer(string name, int layerIndex) : base(name) => LayerIndex = layerIndex;

    public int LayerIndex { get; }

    /// <summary>A short description for <c>inspect</c>, e.g. <c>softmax</c> or <c>liger-gla(window=64)</c>.</summary>
    public abstract string Describe();

    /// <summary>Layer descriptions in order, each distinct one with its count: <c>liger-gla(window=64, …) × 12</c>.</summary>
    public static IReadOnlyList<string> Summarize(IEnumerable<string> descriptions) =>
        descriptions.GroupBy(x => x).Select(g => $"{g.Key} × {g.Count()}").ToArray();
}
