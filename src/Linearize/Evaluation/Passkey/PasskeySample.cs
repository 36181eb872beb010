namespace Linearize.Evaluation.Passkey;

/// <summary>
/// One passkey prompt as token ids (the model reads exactly these; docs/EVALUATION.md §4). <see cref="Prompt"/> and
/// <see cref="Answer"/> are the ids decoded, kept for people and to check that a file is scored with the tokenizer
/// that made it.
/// </summary>
/// <param name="Length">Prompt and answer tokens together.</param>
/// <param name="Depth">The requested depth in [0, 1].</param>
/// <param name="Index">The sample's number within its length: samples with the same length and index share their
/// filler and pass key and differ only in the needle's place.</param>
/// <param name="NeedlePosition">Index in <paramref name="PromptIds"/> of the needle's first token.</param>
/// <param name="FillerStart">Tokens before the filler: 1 with a BOS token, else 0.</param>
/// <param name="FillerTokens">Filler tokens in the prompt, before and after the needle.</param>
public sealed record PasskeySample(
    int Length,
    double Depth,
    int Index,
    string Passkey,
    int NeedlePosition,
    int FillerStart,
    int FillerTokens,
    int[] PromptIds,
    int[] AnswerIds,
    string Prompt,
    string Answer)
{
    /// <summary>Where the needle landed: the filler tokens before it over all filler tokens.</summary>
    public double NeedleDepth => FillerTokens == 0 ? 0 : (NeedlePosition - FillerStart) / (double)FillerTokens;
}
