using System.Text;

namespace Linearize.Tokenization;

/// <summary>
/// Turns a stream of token ids into text without ever emitting half a UTF-8 character: a character split across
/// tokens (byte-fallback or byte-level BPE) is held back until its last byte arrives. Same idea as LLamaSharp's
/// <c>StreamingTokenDecoder</c>: one <see cref="Decoder"/> keeps the partial bytes across calls.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly TextTokenizer _tokenizer;
    private readonly Decoder _decoder = new UTF8Encoding(false, false).GetDecoder();
    private int? _previous;

    public StreamingDetokenizer(TextTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Adds one token; returns the text that is now complete (possibly empty).</summary>
    public string Push(int id)
    {
        byte[] bytes = _tokenizer.TokenBytes(id, _previous);
        _previous = id;
        if (bytes.Length == 0)
            return string.Empty;
        var chars = new char[_decoder.GetCharCount(bytes, 0, bytes.Length, flush: false)];
        int n = _decoder.GetChars(bytes, 0, bytes.Length, chars, 0, flush: false);
        return new string(chars, 0, n);
    }

    /// <summary>Ends the stream: any incomplete trailing bytes become U+FFFD.</summary>
    public string Flush()
    {
        var chars = new char[_decoder.GetCharCount(Array.Empty<byte>(), 0, 0, flush: true)];
        int n = _decoder.GetChars(Array.Empty<byte>(), 0, 0, chars, 0, flush: true);
        return new string(chars, 0, n);
    }
}
