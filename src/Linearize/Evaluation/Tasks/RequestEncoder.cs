using Linearize.Tokenization;

namespace Linearize.Evaluation.Tasks;

/// <summary>lm-eval's <c>_encode_pair</c>, shared by both scorers so they score identical token sequences.</summary>
public sealed class RequestEncoder
{
    private readonly TextTokenizer _tokenizer;

    public RequestEncoder(TextTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Whether BOS starts every context (when the tokenizer adds it by default, as lm-eval's HF models do).</summary>
    public bool AddsBos => _tokenizer.AddBosByDefault && _tokenizer.BosId is not null;

    /// <summary>Trailing whitespace of the context moves to the continuation; the continuation's tokens are those of
    /// <c>encode(context + continuation)</c> after the context's.</summary>
    public EncodedRequest Encode(TaskRequest request)
    {
        string context = request.Context, continuation = request.Continuation;
        int n = context.Length - RStrip(context).Length;
        if (n > 0)
        {
            continuation = context[^n..] + continuation;
            context = context[..^n];
        }

        var whole = _tokenizer.Encode(context + continuation, AddsBos);
        var ctx = _tokenizer.Encode(context, AddsBos);
        if (ctx.Count == 0)
            throw new LinearizeException("empty context without a BOS token is not supported");
        return new EncodedRequest(ctx.ToArray(), whole.Skip(ctx.Count).ToArray());
    }

    /// <summary>Python's <c>str.rstrip()</c> (every <c>str.isspace</c> character, which adds U+001C–U+001F to .NET's).</summary>
    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && (char.IsWhiteSpace(s[end - 1]) || s[end - 1] is >= '\u001c' and <= '\u001f'))
            end--;
        return s[..end];
    }
}
