using Linearize.Checkpoints.Configuration;
using Linearize.Evaluation;
using Linearize.Tests.Fixtures;
using Linearize.Tokenization;

namespace Linearize.Tests.Evaluation;

[Collection("Torch")]
public sealed class PerplexityProtocolTests
{
    [SharedFact("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void StridedRollingScoresEveryTokenButTheFirstOnce()
    {
        using var model = TinyModels.Create(Linearize.Checkpoints.Configuration.LlamaConfig.FromJson(TinyModels.BaseJson(vocab: 512), "tiny-512"));
        var tok = Llama2cTokenizer.Load(SharedData.Tok512);
        var text = PerplexityEvaluator.ReadPrefix(SharedData.TinyStoriesVal, 3);
        int n = tok.Encode(text, addBos: true).Count;
        var eval = new PerplexityEvaluator(model, tok, maxLength: 64);
        var disjoint = eval.Rolling(text);
        var strided = eval.Rolling(text, stride: 16);
        Assert.Equal(n - (n + 63) / 64, disjoint.Tokens);
        Assert.Equal(n - 1, strided.Tokens);
        Assert.NotEqual(disjoint.MeanNll, strided.MeanNll);

        // One window over everything equals per-token scoring of the single document.
        var whole = new PerplexityEvaluator(model, tok, maxLength: n).Rolling(text);
        var alsoWhole = new PerplexityEvaluator(model, tok, maxLength: n).Rolling(text, stride: n / 2);
        Assert.Equal(n - 1, whole.Tokens);
        Assert.Equal(whole.MeanNll, alsoWhole.MeanNll, 1e-9);
    }

    [Fact]
    public void ReadPrefixStopsAfterTheNthNonEmptyLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("t.txt"), "a\n\nb\n  \nc\nd\n");
        Assert.Equal("a\n\nb\n", PerplexityEvaluator.ReadPrefix(dir.File("t.txt"), 2));
        Assert.Equal(new[] { "a", "b", "c" }, PerplexityEvaluator.ReadLines(dir.File("t.txt"), 3));
    }
}
