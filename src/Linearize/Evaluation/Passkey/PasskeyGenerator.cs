using System.Globalization;
using Linearize.Tokenization;

namespace Linearize.Evaluation.Passkey;

/// <summary>
/// Makes passkey prompts (docs/EVALUATION.md §4): BOS, filler sentences with the needle between two of them at the
/// requested depth, then the question; the answer is the key's digits. Everything is built in tokens, so a sample is
/// exactly as long as asked.
/// </summary>
public sealed class PasskeyGenerator
{
    public const string Question = "What is the pass key? The pass key is";

    private readonly TextTokenizer _tokenizer;
    private readonly FillerText _filler;
    private readonly Dictionary<int, int[]> _pieces = new();
    private readonly int[] _question;

    public PasskeyGenerator(TextTokenizer tokenizer, FillerText filler)
    {
        _tokenizer = tokenizer;
        _filler = filler;
        _question = Piece(Question);
    }

    /// <summary>The sentence the model must remember (Mohtashami &amp; Jaggi 2023, "Landmark Attention", arXiv:2305.16300).</summary>
    public static string Needle(string passkey) => $"The pass key is {passkey}. Remember it. {passkey} is the pass key.";

    private int Bos => _tokenizer.AddBosByDefault && _tokenizer.BosId is not null ? 1 : 0;

    /// <summary>Every length × depth cell, <see cref="PasskeyOptions.SamplesPerCell"/> samples each, ordered by length,
    /// sample, depth. Sample i of a length has one filler start and key for every depth.</summary>
    public List<PasskeySample> Generate(PasskeyOptions options)
    {
        options.Validate();
        var random = new Random(options.Seed);
        var samples = new List<PasskeySample>();
        int low = (int)Math.Pow(10, options.Digits - 1), high = (int)Math.Pow(10, options.Digits);
        foreach (int length in options.Lengths)
            for (int i = 0; i < options.SamplesPerCell; i++)
            {
                string key = random.Next(low, high).ToString(CultureInfo.InvariantCulture);
                int start = random.Next(_filler.Sentences.Count);
                foreach (double depth in options.Depths)
                    samples.Add(Make(length, depth, i, key, start));
            }

        return samples;
    }

    /// <summary>One sample: filler sentences from <paramref name="start"/> on (wrapping round the text), the last one cut
    /// to fill the length exactly; the needle at the sentence boundary nearest <c>depth × filler tokens</c>.</summary>
    public PasskeySample Make(int length, double depth, int index, string passkey, int start)
    {
        var needle = Piece(Needle(passkey));
        var answer = Tail(". " + Question, " " + passkey);
        int fixedTokens = Bos + needle.Length + _question.Length + answer.Length;
        int filler = length - fixedTokens;
        if (filler < 1)
            throw new LinearizeException($"--lengths: {length} is too short; the needle, question and answer alone take {fixedTokens} tokens with this tokenizer");

        var fillerIds = new List<int>(filler);
        var boundaries = new List<int> { 0 };
        for (int s = start; fillerIds.Count < filler; s = (s + 1) % _filler.Sentences.Count)
        {
            var piece = SentencePiece(s);
            fillerIds.AddRange(piece.Take(filler - fillerIds.Count));
            boundaries.Add(fillerIds.Count);
        }

        double target = depth * filler;
        int at = boundaries.MinBy(b => Math.Abs(b - target)); // the first of two equally near: the shallower

        var prompt = new List<int>(length);
        if (Bos == 1)
            prompt.Add(_tokenizer.BosId!.Value);
        prompt.AddRange(fillerIds.Take(at));
        prompt.AddRange(needle);
        prompt.AddRange(fillerIds.Skip(at));
        prompt.AddRange(_question);
        var ids = prompt.ToArray();
        return new PasskeySample(length, depth, index, passkey, Bos + at, Bos, filler, ids, answer,
            _tokenizer.Decode(ids), _tokenizer.Decode(answer));
    }

    private int[] SentencePiece(int s)
    {
        if (!_pieces.TryGetValue(s, out var ids))
            _pieces[s] = ids = Piece(_filler.Sentences[s]);
        return ids;
    }

    /// <summary>A sentence as it is tokenized inside running text, after another sentence and a space.</summary>
    private int[] Piece(string sentence) => Tail(".", " " + sentence);

    /// <summary>
    /// The tokens <paramref name="text"/> adds after <paramref name="head"/>: <c>encode(head + text)</c> less
    /// <c>encode(head)</c> — lm-eval's rule for a continuation (docs/EVALUATION.md §2), which gives each tokenizer's own
    /// form of a word after a space (SentencePiece's dummy prefix, byte-level BPE's leading-space tokens alike).
    /// </summary>
    private int[] Tail(string head, string text)
    {
        var whole = _tokenizer.Encode(head + text, addBos: false);
        int h = _tokenizer.Encode(head, addBos: false).Count;
        return whole.Skip(h).ToArray();
    }
}
