using TorchSharp.Modules;

namespace Linearize.LinearAttention;

/// <summary>A linear layer that attention transfer can train (docs/METHODS.md §2.5): while <see cref="Transfer"/> is set it
/// records the distance of its output from the teacher's softmax attention and passes the teacher's output on.</summary>
public interface ITransferLayer
{
    /// <summary>While set, the layer records attention-transfer losses and outputs the teacher's attention.</summary>
    AttentionTransferRecorder? Transfer { get; set; }

    /// <summary>The parameters the method added to the teacher (what attention transfer trains); empty when none.</summary>
    IEnumerable<Parameter> TransferParameters { get; }

    /// <summary>The layer's index in the model.</summary>
    int LayerIndex { get; }
}
