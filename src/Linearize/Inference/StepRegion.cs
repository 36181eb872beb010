namespace Linearize.Inference;

/// <summary>The parts of a forward pass that <see cref="StepProfile"/> times separately, in the order a layer runs them.</summary>
public enum StepRegion
{
    /// <summary>Embedding rows and RoPE tables (once per pass).</summary>
    Embedding,

    /// <summary>The two RMSNorms of every layer.</summary>
    Norms,

    /// <summary>The fused q|k|v product (with the activations' rounding or quantization).</summary>
    QkvProjection,

    /// <summary>The token mixer: RoPE, the cache or state update, attention or the recurrence.</summary>
    Mixer,

    /// <summary>The attention output product.</summary>
    OutputProjection,

    /// <summary>The fused gate|up product.</summary>
    GateUpProjection,

    /// <summary>SwiGLU.</summary>
    SwiGlu,

    /// <summary>The down product.</summary>
    DownProjection,

    /// <summary>The two residual additions of every layer.</summary>
    Residual,

    /// <summary>The final norm and the head product (the logits).</summary>
    Head,
}
