namespace Linearize.Checkpoints.Configuration;

/// <summary>Which layer a linearization method builds, and so which options section of <c>config.json</c> it reads.
/// Methods of one kind share a TorchSharp layer, a decoding cache and an engine mixer; they differ by parameters
/// (a Liger family, a LoLCATs window shape).</summary>
public enum MethodKind
{
    /// <summary>Liger attention: the teacher's q/k/v/o, a gated recurrent branch built from the key projection, a
    /// sliding-window branch and their α/β mix (docs/METHODS.md §1).</summary>
    Liger,

    /// <summary>The training-free sliding-window softmax baseline, with optional sinks (docs/METHODS.md §3.1).</summary>
    SlidingWindow,

    /// <summary>LoLCATs attention: learned feature maps, a softmax window and a linear term over older keys
    /// (docs/METHODS.md §2).</summary>
    Lolcats,
}
