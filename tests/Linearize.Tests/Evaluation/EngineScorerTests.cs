using Linearize.Evaluation.Tasks;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Tests.Fixtures;
using TorchSharp;

namespace Linearize.Tests.Evaluation;

/// <summary>The engine's scorer against the TorchSharp reference: every request scored as one TorchSharp pass over
/// context + continuation — shared contexts, shared prefixes, several choices and left-truncated requests alike.</summary>
[Collection("Torch")]
public sealed class EngineScorerTests
{
    public static IEnumerable<object[]> Kinds() => EvalHarnessTests.Kinds();

    /// <summary>Contexts with 1–4 choices of 1–8 tokens; a family of contexts sharing a 23-token prefix (remainders of
    /// equal and different lengths); a few requests longer than max_length + 1.</summary>
    private static List<EncodedRequest> Requests(int maxLength)
    {
        var rng = new Random(11);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, 67)).ToArray();
        var requests = new List<EncodedRequest>();
        for (int doc = 0; doc < 6; doc++)
        {
            var ctx = new[] { 1 }.Concat(Tokens(rng.Next(2, 30))).ToArray();
            for (int choice = 0; choice < 1 + doc % 4; choice++)
                requests.Add(new EncodedRequest(ctx, Tokens(rng.Next(1, 9))));
        }

        var prefix = new[] { 1 }.Concat(Tokens(23)).ToArray();
        foreach (int remainder in new[] { 5, 9, 5, 1 })
        {
            var ctx = prefix.Concat(Tokens(remainder)).ToArray();
            foreach (var letter in new[] { 40, 41, 42 })
                requests.Add(new EncodedRequest(ctx, new[] { letter }));
        }

        requests.Add(new EncodedRequest(new[] { 1 }.Concat(Tokens(maxLength + 7)).ToArray(), Tokens(3)));
        requests.Add(new EncodedRequest(new[] { 1 }.Concat(Tokens(maxLength - 2)).ToArray(), Tokens(5)));
        return requests;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void EngineScoresEqualTorchSharpOnePassPerRequest(string kind)
    {
        const int maxLength = 48;
        using var model = EvalHarnessTests.Model(kind);
        using var engine = Engines.Create(model);
        var requests = Requests(maxLength);
        // Continuations that are the model's own greedy choice, so is_greedy is exercised both ways.
        foreach (var r in requests.Take(4).ToList())
        {
            using var ids = torch.tensor(r.Context.Select(t => (long)t).ToArray()).view(1, -1);
            using var logits = model.Forward(ids);
            requests.Add(new EncodedRequest(r.Context, new[] { (int)logits[0, -1].argmax().item<long>() }));
        }

        var tokenizer = new CharTokenizer(67);
        var reference = new LoglikelihoodScorer(model, tokenizer, maxLength);
        var scorer = new EngineLoglikelihoodScorer(engine, tokenizer, maxLength) { MinSharedPrefix = 8 };
        var progress = new List<int>();
        var scores = scorer.Score(requests, (done, _) => progress.Add(done));
        double worst = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var expected = reference.ScoreTruncated(requests[i]);
            worst = Math.Max(worst, Math.Abs(expected.LogLikelihood - scores[i].LogLikelihood));
            Assert.True(expected.IsGreedy == scores[i].IsGreedy, $"{kind}: request {i}: is_greedy differs");
        }

        Assert.True(worst < 1e-4, $"{kind}: engine scores differ from TorchSharp by {worst:E2}");
        Assert.Equal(requests.Count, progress[^1]);
        Assert.True(scores.Select(s => s.LogLikelihood).Distinct().Count() > 10, "scores must vary");
        Assert.Contains(scores, s => s.IsGreedy);
        Assert.Contains(scores, s => !s.IsGreedy);
    }
}
