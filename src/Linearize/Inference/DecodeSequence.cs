using Linearize.Inference.Mixers;

namespace Linearize.Inference;

/// <summary>
/// One sequence's decoding state in a <see cref="DecodeEngine"/>: a <see cref="LayerState"/> per layer (a KV cache for
/// softmax layers, a window ring + recurrent state for linear layers) and the number of tokens it has seen. Sequences
/// are independent: a batch step advances any set of them, each at its own position.
/// </summary>
public sealed class DecodeSequence : IDisposable
{
    internal DecodeSequence(LayerState[] layers, DecodeEngine engine)
    {
        Layers = layers;
        Engine = engine;
    }

    internal LayerState[] Layers { get; }

    internal DecodeEngine Engine { get; }

    /// <summary>Tokens seen so far: the position of the next token.</summary>
    public long Position { get; internal set; }

    /// <summary>Bytes of state this sequence holds (and a decoding step reads).</summary>
    public long StateBytes => Layers.Sum(l => l.StateBytes);

    /// <summary>An independent copy (e.g. one prefilled prompt fanned out to a batch).</summary>
    public DecodeSequence Clone() => new(Layers.Select(l => l.Clone()).ToArray(), Engine) { Position = Position };

    public void Dispose()
    {
        foreach (var l in Layers)
            l.Dispose();
    }
}
