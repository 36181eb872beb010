namespace Linearize.Checkpoints;

/// <summary>A checkpoint file is malformed. The message names the file (and the tensor, when one is at fault).</summary>
public sealed class CheckpointFormatException : LinearizeException
{
    public CheckpointFormatException(string path, string problem)
        : base($"{path}: {problem}") => FilePath = path;

    public CheckpointFormatException(string path, string tensor, string problem)
        : base($"{path}: tensor '{tensor}': {problem}")
    {
        FilePath = path;
        TensorName = tensor;
    }

    public string FilePath { get; }

    public string? TensorName { get; }
}
