using System.Globalization;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// The <c>layers</c> container of a <see cref="LlamaModel"/> that holds only layers <c>[first, first + n)</c>: each is
/// registered under its index in the whole stack, as <c>ModuleList</c> would name it, so a slice's parameters keep
/// their Hugging Face names (<c>model.layers.5.self_attn.q_proj.weight</c>) and its checkpoints match the whole model's.
/// </summary>
internal sealed class DecoderLayerSlice : nn.Module
{
    public DecoderLayerSlice(int first, IReadOnlyList<LlamaDecoderLayer> layers) : base(nameof(DecoderLayerSlice))
    {
        for (int i = 0; i < layers.Count; i++)
            register_module((first + i).ToString(CultureInfo.InvariantCulture), layers[i]);
    }
}
