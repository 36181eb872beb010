using System.Text;
using Microsoft.ML.Tokenizers;

namespace Linearize.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (Llama 1/2, Mistral, TinyLlama) through
/// <see cref="LlamaTokenizer"/> from Microsoft.ML.Tokenizers.
/// </summary>
public sealed class SentencePieceTextTokenizer : TextTokenizer
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly string[] _pieces;
    private readonly HashSet<int> _special;

    private SentencePieceTextTokenizer(string path, LlamaTokenizer tokenizer)
    {
        Path = path;
        _tokenizer = tokenizer;
        int size = tokenizer.Vocabulary.Values.Max() + 1;
        _pieces = new string[size];
        foreach (var (piece, id) in tokenizer.Vocabulary)
            _pieces[id] = piece;
        _special = new HashSet<int> { tokenizer.BeginningOfSentenceId, tokenizer.EndOfSentenceId, tokenizer.UnknownId };
        if (tokenizer.SpecialTokens is not null)
            foreach (var id in tokenizer.SpecialTokens.Values)
                _special.Add(id);
    }

    public string Path { get; }

    public override string Description => $"SentencePiece ({VocabSize} pieces) from {System.IO.Path.GetFileName(Path)}";

    public override int VocabSize => _pieces.Length;

    public override int? BosId => _tokenizer.BeginningOfSentenceId;

    public override int? EosId => _tokenizer.EndOfSentenceId;

    public override bool AddBosByDefault => true;

    public override bool IsSpecial(int id) => _special.Contains(id);

    public static SentencePieceTextTokenizer Load(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        try
        {
            using var stream = File.OpenRead(path);
            return new SentencePieceTextTokenizer(path, LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false));
        }
        catch (Exception e) when (e is not LinearizeException)
        {
            throw new LinearizeException($"{path}: not a readable SentencePiece model ({e.Message})", e);
        }
    }

    public override IReadOnlyList<int> Encode(string text, bool addBos) =>
        _tokenizer.EncodeToIds(text, addBeginningOfSentence: addBos, addEndOfSentence: false,
            considerPreTokenization: true, considerNormalization: true);

    public override string Decode(IReadOnlyList<int> ids) => _tokenizer.Decode(ids, considerSpecialTokens: false);

    public override byte[] TokenBytes(int id, int? previousId)
    {
        if (id < 0 || id >= _pieces.Length)
            throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");
        if (IsSpecial(id))
            return Array.Empty<byte>();
        string piece = _pieces[id];
        if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' &&
            byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
            return new[] { b };
        string text = piece.Replace('\u2581', ' ');
        // SentencePiece removes the dummy-prefix space of the first piece.
        if ((previousId is null || previousId == BosId) && _tokenizer.AddDummyPrefix && text.StartsWith(' '))
            text = text[1..];
        return Encoding.UTF8.GetBytes(text);
    }
}
