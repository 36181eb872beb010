using System.Text.Json.Nodes;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Modeling;

/// <summary><c>inspect</c> describes a model from its config and one layer of each kind; what it reports must be what
/// the whole model built from that config has: the same parameter count and the same mixer on every layer.</summary>
[Collection("Torch")]
public sealed class ModelSummaryTests
{
    [Theory]
    [MemberData(nameof(TinyModels.Variants), MemberType = typeof(TinyModels))]
    public void ATeacherIsSummarizedAsItIsBuilt(string variant) => AssertSummaryMatches(TinyModels.Config(variant));

    public static IEnumerable<object[]> Converted() =>
        LinearizationMethods.Names.Select(n => new object[] { n, false, false })
            .Concat(new[] { new object[] { "liger-gla", true, false }, new object[] { "liger-gdn", true, false }, new object[] { "lolcats-sw", false, true }, new object[] { "liger-gsa", false, true } });

    /// <summary>Every method, a learned gate (which adds g_proj), and hybrids that keep layer 1 softmax.</summary>
    [Theory]
    [MemberData(nameof(Converted))]
    public void AConvertedModelIsSummarizedAsItIsBuilt(string name, bool learnedGate, bool softmaxLayer1)
    {
        var method = LinearizationMethods.Get(name, "test");
        var lin = new LinearizationConfig
        {
            Method = method,
            Liger = new LigerOptions { Family = method.Family ?? LigerFamily.Gla, Gate = learnedGate ? LigerGate.Learned : LigerGate.Keys },
            Lolcats = new LolcatsOptions { Shape = method.Shape ?? LolcatsWindowShape.Sw },
            SoftmaxLayers = softmaxLayer1 ? new[] { 1 } : Array.Empty<int>(),
        };
        var json = TinyModels.BaseJson(layers: 3);
        json[LinearizationConfig.SectionName] = lin.ToJson();
        AssertSummaryMatches(LlamaConfig.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject(), "tiny"));
    }

    private static void AssertSummaryMatches(LlamaConfig config)
    {
        using var model = new LlamaForCausalLM(config, MixerFactory.For(config));
        var summary = ModelSummary.Of(config);
        Assert.Equal(model.ParameterCount(), summary.Parameters);
        Assert.Equal(model.Model.Layers.Select(l => l.SelfAttention.Describe()), summary.Mixers);
    }
}
