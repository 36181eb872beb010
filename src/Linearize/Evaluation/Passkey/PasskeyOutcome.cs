namespace Linearize.Evaluation.Passkey;

/// <summary>One sample scored: the model's greedy tokens after the prompt, as many as the answer has, and whether they
/// are the answer's tokens exactly.</summary>
public sealed record PasskeyOutcome(PasskeySample Sample, int[] Generated, bool Correct);
