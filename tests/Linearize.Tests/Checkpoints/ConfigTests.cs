using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
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

    [Theory]
    [InlineData("max_position_embeddings", "0", "'max_position_embeddings' must be positive, got 0")]
    [InlineData("max_position_embeddings", "-3", "'max_position_embeddings' must be positive, got -3")]
    [InlineData("linearization", """{"method": "liger-gla", "window": -5}""", "'linearization.window' must be at least 1, got -5")]
    [InlineData("linearization", """{"method": "liger-gla", "alpha": "half"}""", "'linearization.alpha' must be a number, got \"half\"")]
    [InlineData("linearization", """{"method": "liger-gla", "window": 6.5}""", "'linearization.window' must be an integer, got 6.5")]
    [InlineData("linearization", """{"method": "liger-gla", "normalize_recurrent": 1}""", "'linearization.normalize_recurrent' must be true or false")]
    [InlineData("linearization", """{"method": "liger-gla", "softmax_layers": [99]}""", "'linearization.softmax_layers' holds 99")]
    [InlineData("linearization", """{"method": "liger-gla", "chunk_size": 50}""", "'linearization.chunk_size' (50) must be a multiple of sub_chunk_size (16)")]
    [InlineData("linearization", """{"method": "liger-gla", "gate_normalizer": 0}""", "'linearization.gate_normalizer' must be positive")]
    [InlineData("linearization", """{"method": "liger-gsa", "slots": 0}""", "'linearization.slots' must be at least 1, got 0")]
    [InlineData("linearization", """{"method": "swa", "sinks": -1}""", "'linearization.sinks' must be at least 0, got -1")]
    [InlineData("linearization", """{"method": "lolcats-sw", "feature_map": "relu"}""", "'linearization.feature_map' 'relu' is not a feature map")]
    [InlineData("linearization", """{"method": "lolcats-sw", "query_block": 0}""", "'linearization.query_block' must be at least 1")]
    [InlineData("linearization", """{"method": 7}""", "'linearization.method' must be a string, got 7")]
    [InlineData("linearization", """{"window": 8}""", "'linearization.method' is missing")]
    [InlineData("linearization", """{"method": "liger-xyz"}""", "'linearization.method' 'liger-xyz' is not a linearization method")]
    public void EveryConfigErrorNamesTheFileAndTheField(string key, string json, string message)
    {
        var j = TinyModels.BaseJson();
        j[key] = JsonNode.Parse(json);
        const string file = "models/edited/config.json";
        var e = Assert.Throws<LinearizeException>(() =>
        {
            var config = LlamaConfig.Parse(j.ToJsonString(), file);
            LinearizationConfig.FromModel(config);
        });
        Assert.StartsWith(file + ": ", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AWellFormedLinearizationSectionStillReads()
    {
        var j = TinyModels.BaseJson();
        j["linearization"] = JsonNode.Parse("""{"method": "liger-gsa", "window": 8, "alpha": 0.75, "beta": 0.25, "slots": 4, "chunk_size": 64.0, "softmax_layers": [1]}""");
        var lin = LinearizationConfig.FromModel(LlamaConfig.Parse(j.ToJsonString(), "cfg"))!;
        Assert.Equal(8, lin.Liger.Window);
        Assert.Equal(0.75, lin.Liger.Alpha);
        Assert.Equal(4, lin.Liger.Slots);
        Assert.Equal(64, lin.Liger.ChunkSize);
        Assert.Equal(new[] { 1 }, lin.SoftmaxLayers);
    }
}
