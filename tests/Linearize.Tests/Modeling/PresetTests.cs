using System.Text.Json.Nodes;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Modeling;

/// <summary>The shape presets carry the special-token ids of the real checkpoints they imitate.</summary>
public sealed class PresetTests
{
    [Theory]
    [InlineData("llama-3.2-1b", 128000, 128001)] // meta-llama/Llama-3.2-1B config.json
    [InlineData("smollm2-135m", 0, 0)]           // HuggingFaceTB/SmolLM2-135M config.json: <|endoftext|> both
    [InlineData("stories110m", 1, 2)]            // llama2.c's SentencePiece <s>, </s>
    [InlineData("stories260k", 1, 2)]
    public void PresetsCarryTheRealSpecialTokenIds(string preset, int bos, int eos)
    {
        var config = ModelPresets.Get(preset);
        Assert.Equal(bos, config.BosTokenId);
        Assert.Equal(new[] { eos }, config.EosTokenIds);
    }

    [SharedFact("models/llama3-tokenizer/tokenizer_config.json")]
    public void TheLlama3PresetAgreesWithTheSharedLlama3Tokenizer()
    {
        var tc = JsonNode.Parse(File.ReadAllText(SharedData.PathOf("models/llama3-tokenizer/tokenizer_config.json")))!;
        int IdOf(string content) => int.Parse(((JsonObject)tc["added_tokens_decoder"]!)
            .Single(p => (string?)p.Value!["content"] == content).Key, System.Globalization.CultureInfo.InvariantCulture);
        var config = ModelPresets.Get("llama-3.2-1b");
        Assert.Equal(IdOf((string)tc["bos_token"]!), config.BosTokenId);
        Assert.Equal(new[] { IdOf("<|end_of_text|>") }, config.EosTokenIds);
    }
}
