namespace Linearize.Evaluation.Tasks;

/// <summary>lm-eval's answer to a log-likelihood request: <c>Σ log p(cont_j | …)</c> and whether every continuation
/// token is the argmax (<c>is_greedy</c>).</summary>
public readonly record struct RequestScore(double LogLikelihood, bool IsGreedy);
