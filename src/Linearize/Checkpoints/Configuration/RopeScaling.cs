namespace Linearize.Checkpoints.Configuration;

/// <summary>The <c>rope_scaling</c> block of a Hugging Face config.</summary>
public sealed record RopeScaling(
    RopeScalingType Type,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    public static readonly RopeScaling None = new(RopeScalingType.None);

    public static readonly string[] SupportedTypes = { "default", "linear", "llama3" };
}
