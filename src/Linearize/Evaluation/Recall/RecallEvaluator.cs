using Linearize.Data;
using Linearize.Modeling.Llama;
using static TorchSharp.torch;

namespace Linearize.Evaluation.Recall;

/// <summary>
/// Scores MQAR sequences (<see cref="RecallGenerator"/>): one forward pass per batch, and at every query key the
/// argmax must be its value. Accuracy overall and by key-to-query distance — within a 64-token window, then
/// 65–128, 129–256 and beyond: what separates a recurrent state from a sliding window.
/// </summary>
public static class RecallEvaluator
{
    /// <summary>The distance buckets of the report (inclusive bounds).</summary>
    public static readonly IReadOnlyList<(string Name, int From, int To)> Buckets = new[]
    {
        ("≤ 64", 0, 64), ("65–128", 65, 128), ("129–256", 129, 256), ("> 256", 257, int.MaxValue),
    };

    public static RecallResult Evaluate(LlamaForCausalLM model, IReadOnlyList<RecallExample> examples, int batchSize = 8,
        Action<int, int>? progress = null)
    {
        if (examples.Count == 0)
            throw new LinearizeException("no recall sequences to score");
        int vocab = model.Config.VocabSize;
        if (examples.SelectMany(e => e.Tokens).Max() >= vocab)
            throw new LinearizeException($"the recall data uses token ids beyond this model's vocabulary of {vocab}");
        var counts = new int[Buckets.Count];
        var correct = new int[Buckets.Count];
        int answers = 0, right = 0;
        model.eval();
        using var noGrad = no_grad();
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            var batch = examples.Skip(start).Take(batchSize).ToList();
            int t = batch.Max(e => e.Tokens.Length);
            using var scope = NewDisposeScope();
            var ids = new long[batch.Count * t];
            for (int b = 0; b < batch.Count; b++)
                for (int i = 0; i < batch[b].Tokens.Length; i++)
                    ids[b * t + i] = batch[b].Tokens[i];
            if (batch.Any(e => e.Tokens.Length != t))
                throw new LinearizeException("recall sequences in one file must have the same length");
            var logits = model.Forward(tensor(ids).view(batch.Count, t));
            var predicted = logits.argmax(-1).to(ScalarType.Int32).data<int>().ToArray(); // [B, T]
            for (int b = 0; b < batch.Count; b++)
            {
                var e = batch[b];
                for (int q = 0; q < e.QueryPositions.Length; q++)
                {
                    int p = e.QueryPositions[q];
                    bool ok = predicted[b * t + p] == e.Tokens[p + 1];
                    int bucket = Bucket(e.Distances[q]);
                    counts[bucket]++;
                    answers++;
                    if (ok)
                    {
                        correct[bucket]++;
                        right++;
                    }
                }
            }

            progress?.Invoke(Math.Min(start + batchSize, examples.Count), examples.Count);
        }

        return new RecallResult(examples.Count, answers, right,
            Buckets.Select((x, i) => new RecallBucket(x.Name, x.From, x.To, counts[i], correct[i])).ToList());
    }

    private static int Bucket(int distance)
    {
        for (int i = 0; i < Buckets.Count; i++)
            if (distance >= Buckets[i].From && distance <= Buckets[i].To)
                return i;
        return Buckets.Count - 1;
    }
}
