namespace Linearize.Evaluation.Tasks;

/// <summary>lm-eval's <c>output_type</c> of the tasks implemented here.</summary>
public enum TaskOutputKind
{
    /// <summary>One request per choice; metrics acc (and acc_norm where the task reports it).</summary>
    MultipleChoice,

    /// <summary>One request per document; metrics perplexity (per document) and acc (is the continuation greedy).</summary>
    Loglikelihood,
}
