namespace Linearize.Tokenization;

/// <summary>
/// The tokenizer interface the rest of the toolkit uses, whatever the file format behind it.
/// </summary>
public abstract class TextTokenizer
{
    /// <summary>A short description, e.g. <c>llama2.c BPE (512 tokens) from tok512.bin</c>.</summary>
    public abstract string Description { get; }

    public abstract int VocabSize { get; }

    public abstract int? BosId { get; }

    public abstract int? EosId { get; }

    /// <summary>Whether <see cref="Encode(string)"/> prepends BOS (from the tokenizer's own configuration).</summary>
    public abstract bool AddBosByDefault { get; }

    /// <summary>Token ids of <paramref name="text"/>, with BOS first when <paramref name="addBos"/> and the tokenizer has one.</summary>
    public abstract IReadOnlyList<int> Encode(string text, bool addBos);

    public IReadOnlyList<int> Encode(string text) => Encode(text, AddBosByDefault);

    /// <summary>Text of <paramref name="ids"/>; special tokens (BOS, EOS, control tokens) are left out.</summary>
    public abstract string Decode(IReadOnlyList<int> ids);

    /// <summary>
    /// The bytes token <paramref name="id"/> contributes to the text when it follows <paramref name="previousId"/>
    /// (null at the start). Special tokens contribute nothing. Used by <see cref="StreamingDetokenizer"/>.
    /// </summary>
    public abstract byte[] TokenBytes(int id, int? previousId);

    /// <summary>True for ids that are control tokens (BOS, EOS, pad, chat markers).</summary>
    public abstract bool IsSpecial(int id);

    public StreamingDetokenizer CreateStreamingDetokenizer() => new(this);
}
