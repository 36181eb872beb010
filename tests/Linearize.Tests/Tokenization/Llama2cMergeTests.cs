using Linearize.Tokenization;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Tokenization;

/// <summary>The heap-based merge must equal run.c's naive rescanning loop.</summary>
public sealed class Llama2cMergeTests
{
    [SharedFact("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void HeapMergeEqualsRunCLoopOnRandomText()
    {
        var tok = Llama2cTokenizer.Load(SharedData.Tok512);
        var corpus = File.ReadAllText(SharedData.TinyStoriesVal);
        var rng = new Random(11);
        const string alphabet = "abcdefghijklmnopqrstuvwxyz  ,.!?'\"\n\tÀéü東京🙂0123456789";
        for (int trial = 0; trial < 200; trial++)
        {
            string text = trial % 2 == 0
                ? corpus.Substring(rng.Next(corpus.Length - 600), rng.Next(0, 600))
                : new string(Enumerable.Range(0, rng.Next(0, 80)).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
            var fast = tok.Encode(text, addBos: false);
            Assert.Equal(tok.EncodeReference(text), fast);
        }
    }
}
