namespace Linearize.Evaluation;

/// <summary>The outcome of a perplexity run.</summary>
/// <param name="Protocol"><c>per-line</c> or <c>rolling</c>.</param>
/// <param name="MeanNll">Mean negative log-likelihood in nats per scored token.</param>
/// <param name="Tokens">Tokens scored.</param>
/// <param name="Documents">Documents (lines, or 1 for the rolling protocol).</param>
/// <param name="TextTokens">Tokens in the encoded text (scored or not).</param>
/// <param name="Seconds">Wall time of the forward passes.</param>
public sealed record PerplexityResult(string Protocol, double MeanNll, long Tokens, int Documents, long TextTokens, double Seconds)
{
    public double Perplexity => Math.Exp(MeanNll);

    public double TokensPerSecond => Seconds > 0 ? TextTokens / Seconds : 0;
}
