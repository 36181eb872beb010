using System.Text.Json;
using Linearize.Evaluation;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Evaluation;

/// <summary>Both perplexity protocols against the independent references in ../shared/golden.</summary>
[Collection("Torch")]
public sealed class GoldenPerplexityTests
{
    private const double Tolerance = 1e-4;

    [SharedFact("golden/stories260K-ppl.json", "models/stories260K/stories260K.bin", "data/tinystories/val.txt")]
    public void PerLineProtocolMatchesRunC()
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(SharedData.PathOf("golden/stories260K-ppl.json")));
        var (model, tok, _) = ModelLoader.LoadWithTokenizer(SharedData.Stories260KDir);
        using var _m = model;
        var docs = PerplexityEvaluator.ReadLines(SharedData.TinyStoriesVal, golden.RootElement.GetProperty("docs").GetInt32());
        var result = new PerplexityEvaluator(model, tok, maxLength: 512).PerLine(docs);
        Assert.Equal(golden.RootElement.GetProperty("tokens_scored").GetInt64(), result.Tokens);
        Assert.InRange(result.MeanNll, golden.RootElement.GetProperty("mean_nll").GetDouble() - Tolerance,
            golden.RootElement.GetProperty("mean_nll").GetDouble() + Tolerance);
    }

    [SharedFact("golden/stories260K-ppl-rolling.json", "models/stories260K-hf/model.safetensors", "data/tinystories/val.txt")]
    public void RollingProtocolMatchesReference()
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(SharedData.PathOf("golden/stories260K-ppl-rolling.json")));
        var (model, tok, _) = ModelLoader.LoadWithTokenizer(SharedData.Stories260KHf, SharedData.Tok512);
        using var _m = model;
        var text = PerplexityEvaluator.ReadPrefix(SharedData.TinyStoriesVal, 200);
        var result = new PerplexityEvaluator(model, tok, maxLength: 512).Rolling(text);
        Assert.Equal(golden.RootElement.GetProperty("text_tokens").GetInt64(), result.TextTokens);
        Assert.Equal(golden.RootElement.GetProperty("tokens_scored").GetInt64(), result.Tokens);
        Assert.InRange(result.MeanNll, golden.RootElement.GetProperty("mean_nll").GetDouble() - Tolerance,
            golden.RootElement.GetProperty("mean_nll").GetDouble() + Tolerance);
    }
}
