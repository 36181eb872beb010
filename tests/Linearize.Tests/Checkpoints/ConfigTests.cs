using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Checkpoints;

public sealed class ConfigTests
{
    [Fact]
    public void UnknownKeysSurviveARoundTrip()
    {
        var j = TinyModels.BaseJson();
        j["my_custom_key"] = new JsonObject { ["nested"] = 3 };
        j["linearization"] = new JsonObject { ["method"] = "liger-gla" };
        var config = LlamaConfig.FromJson(j, "cfg");
        var again = LlamaConfig.Parse(config.ToJson());
        Assert.Equal(3, again.Raw["my_custom_key"]!["nested"]!.GetValue<int>());
        Assert.Equal("liger-gla", again.Raw["linearization"]!["method"]!.GetValue<string>());
        Assert.Equal(config.HiddenSize, again.HiddenSize);
    }

    [Fact]
    public void Qwen2HasQkvBiasButNoOutputBias()
    {
        var j = TinyModels.BaseJson();
        j["model_type"] = "qwen2";
        var c = LlamaConfig.FromJson(j, "cfg");
        Assert.True(c.QkvBias);
        Assert.False(c.OutputBias);
    }

    [Fact]
    public void DefaultsHeadDimKvHeadsAndEosList()
    {
        var j = TinyModels.BaseJson();
        j.Remove("num_key_value_heads");
        j["eos_token_id"] = new JsonArray(128001, 128009);
        j["head_dim"] = 16;
        var c = LlamaConfig.FromJson(j, "cfg");
        Assert.Equal(4, c.NumKeyValueHeads);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(new[] { 128001, 128009 }, c.EosTokenIds);
    }

    [Fact]
    public void Llama3RopeScalingIsParsed()
    {
        var c = TinyModels.Config("llama3-rope");
        Assert.Equal(RopeScalingType.Llama3, c.RopeScaling.Type);
        Assert.Equal(8.0, c.RopeScaling.Factor);
        Assert.Equal(16, c.RopeScaling.OriginalMaxPositionEmbeddings);
    }
}
