using Linearize.Tokenization;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Tokenization;

/// <summary>Tokenizers against independent references (SentencePiece, transformers.js) in ../shared/golden.</summary>
public sealed class GoldenTokenizerTests
{
    [SharedFact("golden/llama2-tokenizer.jsonl", "models/llama2-tokenizer/tokenizer.model")]
    public void SentencePieceModelMatchesReference()
    {
        var tok = TokenizerLoader.Load(SharedData.PathOf("models/llama2-tokenizer/tokenizer.model"));
        Assert.Equal(32000, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        foreach (var r in Jsonl.Read(SharedData.PathOf("golden/llama2-tokenizer.jsonl")))
        {
            string text = r.GetProperty("text").GetString()!;
            Assert.Equal(r.Ints("ids"), tok.Encode(text, addBos: false));
            Assert.Equal(r.Ints("with_bos"), tok.Encode(text, addBos: true));
            Assert.Equal(text, tok.Decode(r.Ints("ids")));
            Assert.Equal(text, Stream(tok, r.Ints("with_bos")));
        }
    }

    [SharedFact("golden/llama3-tokenizer.jsonl", "models/llama3-tokenizer/tokenizer.json")]
    public void HfTokenizerJsonMatchesReference()
    {
        var tok = TokenizerLoader.Load(SharedData.PathOf("models/llama3-tokenizer/tokenizer.json"));
        Assert.Equal(128256, tok.VocabSize);
        Assert.Equal(128000, tok.BosId);
        Assert.Equal(128001, tok.EosId);
        foreach (var r in Jsonl.Read(SharedData.PathOf("golden/llama3-tokenizer.jsonl")))
        {
            string text = r.GetProperty("text").GetString()!;
            var ids = r.Ints("ids");
            Assert.Equal(ids, tok.Encode(text, addBos: false));
            if (ids.Any(tok.IsSpecial))
                continue; // decoding drops control tokens by design
            Assert.Equal(text, tok.Decode(ids));
            Assert.Equal(text, Stream(tok, ids));
        }
    }

    [SharedFact("golden/stories260K-greedy.jsonl", "models/stories260K/tok512.bin")]
    public void Llama2cTokenizerRoundTripsAndStreams()
    {
        var tok = TokenizerLoader.Load(SharedData.Tok512);
        foreach (var text in new[] { "Once upon a time", "naïve café — 東京 🙂\n\nnew  lines", "  two leading spaces", "" })
        {
            var ids = tok.Encode(text, addBos: true);
            Assert.Equal(text, tok.Decode(ids));
            Assert.Equal(text, Stream(tok, ids));
        }
    }

    /// <summary>Streams ids one at a time, checking no chunk ends inside a UTF-8 sequence (no U+FFFD, no lone surrogate).</summary>
    private static string Stream(TextTokenizer tok, IReadOnlyList<int> ids)
    {
        var detok = tok.CreateStreamingDetokenizer();
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            string piece = detok.Push(id);
            Assert.DoesNotContain('\uFFFD', piece);
            if (piece.Length > 0)
                Assert.False(char.IsHighSurrogate(piece[^1]), "a chunk ended inside a surrogate pair");
            sb.Append(piece);
        }

        sb.Append(detok.Flush());
        return sb.ToString();
    }
}
