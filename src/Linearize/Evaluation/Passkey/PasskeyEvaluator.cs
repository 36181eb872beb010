using Linearize.Tokenization;

namespace Linearize.Evaluation.Passkey;

/// <summary>
/// Scores passkey samples by exact match (docs/EVALUATION.md §4): the model continues each prompt greedily for as many
/// tokens as the answer has, and a sample is right when those tokens are the answer's. The same as asking that every
/// answer token be the argmax given the ones before it, so one wrong digit fails the sample.
/// </summary>
public static class PasskeyEvaluator
{
    /// <param name="greedy">The model: <c>(prompt, n)</c> → its first <c>n</c> greedy tokens after the prompt.</param>
    public static PasskeyResult Evaluate(IReadOnlyList<PasskeySample> samples, Func<int[], int, int[]> greedy,
        IProgress<(int Done, int Total)>? progress = null, CancellationToken cancel = default)
    {
        var outcomes = new PasskeyOutcome[samples.Count];
        for (int i = 0; i < samples.Count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            var s = samples[i];
            var generated = greedy(s.PromptIds, s.AnswerIds.Length);
            outcomes[i] = new PasskeyOutcome(s, generated, generated.AsSpan().SequenceEqual(s.AnswerIds));
            progress?.Report((i + 1, samples.Count));
        }

        return new PasskeyResult(outcomes);
    }

    /// <summary>
    /// Refuses samples made with another tokenizer: ids outside the vocabulary, or prompts whose ids do not decode to
    /// the text stored beside them (the model would read other tokens than the file's author meant).
    /// </summary>
    public static void CheckTokenizer(IReadOnlyList<PasskeySample> samples, TextTokenizer tokenizer, int vocabSize, string source)
    {
        foreach (var s in samples)
        {
            if (s.PromptIds.Concat(s.AnswerIds).Any(id => id < 0 || id >= vocabSize))
                throw new LinearizeException($"{source}: a sample has token ids outside the model's vocabulary of {vocabSize}; it was made with another tokenizer — write it again with data passkey --model");
            if (tokenizer.Decode(s.PromptIds) != s.Prompt || tokenizer.Decode(s.AnswerIds) != s.Answer)
                throw new LinearizeException($"{source}: the sample of length {s.Length}, depth {s.Depth}, does not decode to its prompt with {tokenizer.Description}; it was made with another tokenizer — write it again with data passkey --model");
        }
    }
}
