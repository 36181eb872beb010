using Linearize.Generation;
using Linearize.Methods;
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

    // The decode engine (TorchSharp prefill handed over, then engine steps) in every weight packing's float32 form,
    // and its own token-by-token prefill: the same ids as run.c.
    [SharedFact(Golden, "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void DecodeEngineReproducesRunCFromTheBin() => Check(SharedData.Stories260KBin, null, engine: true);

    [SharedFact(Golden, "models/stories260K-hf/model.safetensors", "models/stories260K/tok512.bin")]
    public void DecodeEngineReproducesRunCFromTheHfDirectory() => Check(SharedData.Stories260KHf, SharedData.Tok512, engine: true);

    [SharedFact(Golden, "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void DecodeEnginePrefillingItselfReproducesRunC()
    {
        var (llama, tok, _) = ModelLoader.LoadWithTokenizer(SharedData.Stories260KBin, null);
        using var _m = llama;
        using var engine = Linearize.Methods.Engines.Create(llama);
        foreach (var record in Jsonl.Read(SharedData.PathOf(Golden)))
        {
            var promptIds = tok.Encode(record.GetProperty("prompt").GetString()!, addBos: true);
            using var seq = engine.CreateSequence();
            int next = Sampler.ArgMax(engine.Prefill(seq, promptIds.ToArray()));
            var generated = new List<int> { next };
            while (generated.Count < Positions - promptIds.Count + 1 && next != 1)
                generated.Add(next = Sampler.ArgMax(engine.Step(seq, next)));
            Assert.Equal(record.Ints("generated_ids"), generated);
        }
    }

    private static void Check(string model, string? tokenizer, bool engine = false)
    {
        var (llama, tok, _) = ModelLoader.LoadWithTokenizer(model, tokenizer);
        using var _ = llama;
        foreach (var record in Jsonl.Read(SharedData.PathOf(Golden)))
        {
            string prompt = record.GetProperty("prompt").GetString()!;
            var promptIds = tok.Encode(prompt, addBos: true);
            Assert.Equal(record.Ints("prompt_ids"), promptIds);

            using var sampler = new Sampler(SamplingOptions.Greedy);
            int n = Positions - promptIds.Count + 1;
            int[] generated;
            if (engine)
            {
                using var decode = Linearize.Methods.Engines.Create(llama);
                generated = new EngineGenerator(decode).Generate(promptIds, n, sampler, new HashSet<int> { 1 }).ToArray();
            }
            else
            {
                generated = new Generator(llama).Generate(promptIds, n, sampler, new HashSet<int> { 1 }).ToArray();
            }

            Assert.Equal(record.Ints("generated_ids"), generated);
        }
    }
}
