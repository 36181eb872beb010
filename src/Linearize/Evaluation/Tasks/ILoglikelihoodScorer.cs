namespace Linearize.Evaluation.Tasks;

/// <summary>
/// Scores log-likelihood requests as lm-evaluation-harness's <c>HFLM._loglikelihood_tokens</c> does: Σ log p(continuation
/// token | everything before it) in float64, and whether greedy decoding would produce the continuation. Two implementations compute the same numbers:
/// <see cref="EngineLoglikelihoodScorer"/> (the decode engine; the default) and <see cref="LoglikelihoodScorer"/> (the
/// TorchSharp model, the reference).
/// </summary>
public interface ILoglikelihoodScorer
{
    /// <summary>The model's context (lm-eval: <c>max_length</c>); longer requests are left-truncated.</summary>
    int MaxLength { get; }

    /// <summary>Whether BOS starts every context.</summary>
    bool AddsBos { get; }

    /// <summary>lm-eval's <c>_encode_pair</c>.</summary>
    EncodedRequest Encode(TaskRequest request);

    /// <summary>Scores every request; <paramref name="progress"/> gets (requests done, tokens computed).</summary>
    RequestScore[] Score(IReadOnlyList<EncodedRequest> requests, Action<int, long>? progress = null, CancellationToken cancel = default);
}
