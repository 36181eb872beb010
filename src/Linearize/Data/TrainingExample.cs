namespace Linearize.Data;

/// <summary>A token sequence and its labels (<see cref="IgnoreIndex"/> where no loss is taken, e.g. on a prompt).</summary>
public sealed record TrainingExample(int[] InputIds, int[] Labels)
{
    /// <summary>HF / PyTorch cross-entropy's <c>ignore_index</c>.</summary>
    public const int IgnoreIndex = -100;

    public int LabelledTokens => Labels.Count(l => l != IgnoreIndex);
}
