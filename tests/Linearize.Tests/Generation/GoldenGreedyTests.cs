using Linearize.Generation;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Generation;

/// <summary>The whole path (loader, tokenizer, model, KV-cached greedy decoding) against llama2.c's own output.</summary>
[Collection("Torch")]
public sealed class GoldenGreedyTests
{
    private const string Golden = "golden/stories260K-greedy.jsonl";
    // run.c -n 120: positions 0..119 are forwarded and each yields the next token, so a prompt of P ids
    // (BOS included) is followed by 120 - P + 1 generated ids.
    private const int Positions = 120;

    [SharedFact(Golden, "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void Llama2cBinReproducesRunC() => Check(SharedData.Stories260KBin, null);

    [SharedFact(Golden, "models/stories260K/stories260K.bin")]
    public void Llama2cDirectoryReproducesRunC() => Check(SharedData.Stories260KDir, null);

    [SharedFact(Golden, "models/stories260K-hf/model.safetensors", "models/stories260K/tok512.bin")]
    public void HuggingFaceDirectoryReproducesRunC() => Check(SharedData.Stories260KHf, SharedData.Tok512);

    private static void Check(string model, string? tokenizer)
    {
        var (llama, tok, _) = ModelLoader.LoadWithTokenizer(model, tokenizer);
        using var _ = llama;
        foreach (var record in Jsonl.Read(SharedData.PathOf(Golden)))
        {
            string prompt = record.GetProperty("prompt").GetString()!;
            var promptIds = tok.Encode(prompt, addBos: true);
            Assert.Equal(record.Ints("prompt_ids"), promptIds);

            using var sampler = new Sampler(SamplingOptions.Greedy);
            var generated = new Generator(llama).Generate(promptIds, Positions - promptIds.Count + 1, sampler, new HashSet<int> { 1 }).ToArray();
            Assert.Equal(record.Ints("generated_ids"), generated);
        }
    }
}
