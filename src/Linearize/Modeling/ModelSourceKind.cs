namespace Linearize.Modeling;

/// <summary>The kinds of model path the CLI accepts.</summary>
public enum ModelSourceKind
{
    /// <summary>A directory with <c>config.json</c> and safetensors weights.</summary>
    HuggingFaceDirectory,

    /// <summary>A llama2.c <c>.bin</c> checkpoint (given directly, or as the only <c>.bin</c> of a directory).</summary>
    Llama2cFile,
}
