namespace Linearize.Checkpoints;

/// <summary>The element types of the safetensors format that this project reads and writes.</summary>
public enum SafetensorsDType
{
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    BOOL,
}
