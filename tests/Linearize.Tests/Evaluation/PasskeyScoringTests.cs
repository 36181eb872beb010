using Linearize.Evaluation.Passkey;

namespace Linearize.Tests.Evaluation;

/// <summary>Exact-match scoring (docs/EVALUATION.md §4) with a forced "model" that answers as each test wants.</summary>
public sealed class PasskeyScoringTests
{
    private static PasskeySample Sample(int length, double depth, int index, int[] answer) =>
        new(length, depth, index, "123", 1, 1, length - answer.Length - 3,
            Enumerable.Range(0, length - answer.Length).ToArray(), answer, "p", "a");

    [Fact]
    public void OnlyEveryAnswerTokenRightCounts()
    {
        int[] answer = [7, 8, 9];
        var samples = new List<PasskeySample>();
        foreach (int length in new[] { 16, 32 })
            foreach (double depth in new[] { 0.0, 0.5, 1.0 })
                for (int i = 0; i < 4; i++)
                    samples.Add(Sample(length, depth, i, answer));

        // Right at depth 0 always; at depth 0.5 only for length 16 and sample 0; depth 1: the last token wrong (one
        // wrong digit fails the sample); the first token wrong with the rest right fails too.
        var asked = new List<(int Length, int Count)>();
        int[] Model(int[] prompt, int n)
        {
            asked.Add((prompt.Length, n));
            var s = samples.Single(x => ReferenceEquals(x.PromptIds, prompt));
            if (s.Depth == 0 || (s.Depth == 0.5 && s.Length == 16 && s.Index == 0))
                return [7, 8, 9];
            return s.Depth == 1 ? [7, 8, 0] : [0, 8, 9];
        }

        var result = PasskeyEvaluator.Evaluate(samples, Model);
        Assert.All(asked, a => Assert.Equal(3, a.Count)); // as many tokens as the answer has
        Assert.Equal(new[] { 16, 32 }, result.Lengths);
        Assert.Equal(new[] { 0.0, 0.5, 1.0 }, result.Depths);
        Assert.Equal(1.0, result.Cell(16, 0).Accuracy);
        Assert.Equal((4, 1), (result.Cell(16, 0.5).Samples, result.Cell(16, 0.5).Correct));
        Assert.Equal(0, result.Cell(32, 0.5).Correct);
        Assert.Equal(0, result.Cell(16, 1).Correct);
        Assert.Equal(new[] { 5, 4 }, result.ByLength.Select(c => c.Correct));
        Assert.Equal(new[] { 8, 1, 0 }, result.ByDepth.Select(c => c.Correct));
        Assert.Equal((24, 9), (result.All.Samples, result.All.Correct));
        Assert.Equal(9 / 24.0, result.All.Accuracy, 12);
        Assert.Equal(samples.Count, result.Outcomes.Count);
    }

    [Fact]
    public void ProgressCountsEverySample()
    {
        var samples = new[] { Sample(10, 0, 0, [1]), Sample(10, 1, 0, [1]) };
        var seen = new List<(int, int)>();
        var progress = new SyncProgress(seen.Add);
        PasskeyEvaluator.Evaluate(samples, (_, n) => new int[n], progress);
        Assert.Equal(new[] { (1, 2), (2, 2) }, seen);
    }

    private sealed class SyncProgress(Action<(int, int)> report) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) value) => report(value);
    }
}
