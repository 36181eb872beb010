using System.Text.Json.Nodes;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Architecture;

/// <summary>The method registry is the one list of methods: these check it is complete and consistent, so a new
/// method or kind that misses a piece fails here by name rather than somewhere downstream.</summary>
public sealed class MethodRegistryTests
{
    [Fact]
    public void NamesAreUniqueAndFindable()
    {
        Assert.Equal(LinearizationMethods.Names.Count, LinearizationMethods.Names.Distinct().Count());
        foreach (var m in LinearizationMethods.All)
            Assert.Same(m, LinearizationMethods.Find(m.Name));
        Assert.Null(LinearizationMethods.Find("liger-nope"));
        var e = Assert.Throws<LinearizeException>(() => LinearizationMethods.Get("liger-nope", "--method"));
        Assert.Contains("--method", e.Message);
        Assert.Contains("liger-gla", e.Message);
    }

    [Fact]
    public void EveryKindHasAMixerRow() =>
        Assert.Equal(Enum.GetValues<MethodKind>().Order(), MixerRegistry.KindsWithRows.Order());

    [Fact]
    public void EveryLigerMethodNamesAFamilyAndEveryFamilyHasOneMethod()
    {
        foreach (var m in LinearizationMethods.All)
        {
            Assert.Equal(m.Kind == MethodKind.Liger, m.Family is not null);
            Assert.Equal(m.Kind == MethodKind.Lolcats, m.Shape is not null);
        }

        foreach (var family in Enum.GetValues<LigerFamily>())
            Assert.Equal(family, LinearizationMethods.Of(family).Family);
        foreach (var shape in Enum.GetValues<LolcatsWindowShape>())
            Assert.Equal(shape, LinearizationMethods.Of(shape).Shape);
    }

    /// <summary>Each method survives config.json: written by name, read back as the same registry entry.</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void EveryMethodRoundTripsThroughConfigJson(string name)
    {
        var method = LinearizationMethods.Get(name, "test");
        var lin = new LinearizationConfig
        {
            Method = method,
            Liger = new LigerOptions { Family = method.Family ?? LigerFamily.Gla },
            Lolcats = new LolcatsOptions { Shape = method.Shape ?? LolcatsWindowShape.Sw },
        };
        var json = TinyModels.BaseJson();
        json[LinearizationConfig.SectionName] = lin.ToJson();
        var config = LlamaConfig.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject(), "tiny");
        Assert.Same(method, LinearizationConfig.FromModel(config)!.Method);
    }

    /// <summary>The learned gate, its bias and the RMSNorm read-out survive config.json too.</summary>
    [Theory]
    [InlineData("liger-gla", "learned", null, "rmsnorm")]
    [InlineData("liger-gdn", "learned", 3.5, "none")]
    [InlineData("liger-hgrn2", "keys", null, "rmsnorm")]
    public void GateAndOutputNormRoundTripThroughConfigJson(string name, string gate, double? bias, string norm)
    {
        var method = LinearizationMethods.Get(name, "test");
        var liger = new LigerOptions
        {
            Family = method.Family!.Value,
            Gate = gate == "learned" ? LigerGate.Learned : LigerGate.Keys,
            LearnedGateBias = bias,
            OutputNorm = norm == "rmsnorm" ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
        };
        var json = TinyModels.BaseJson();
        json[LinearizationConfig.SectionName] = new LinearizationConfig { Method = method, Liger = liger }.ToJson();
        var config = LlamaConfig.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject(), "tiny");
        var read = LinearizationConfig.FromModel(config)!.Liger;
        Assert.Equal(liger.Gate, read.Gate);
        Assert.Equal(liger.LearnedGateBias, read.LearnedGateBias);
        Assert.Equal(liger.OutputNorm, read.OutputNorm);
    }

    [Theory]
    [InlineData("gate", "\"sometimes\"", "linearization.gate")]
    [InlineData("output_norm", "\"layernorm\"", "linearization.output_norm")]
    public void AnUnknownGateOrOutputNormNamesTheField(string key, string value, string field)
    {
        var json = TinyModels.BaseJson();
        var section = new LinearizationConfig().ToJson();
        section[key] = JsonNode.Parse(value);
        json[LinearizationConfig.SectionName] = section;
        var config = LlamaConfig.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject(), "tiny");
        var e = Assert.Throws<LinearizeException>(() => LinearizationConfig.FromModel(config));
        Assert.Contains(field, e.Message);
    }

    public static IEnumerable<object[]> Methods() => LinearizationMethods.Names.Select(n => new object[] { n });
}
