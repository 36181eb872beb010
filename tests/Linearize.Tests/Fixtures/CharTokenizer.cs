using System.Text;
using Linearize.Tokenization;

namespace Linearize.Tests.Fixtures;

/// <summary>A character-level tokenizer for tiny random models: BOS = 1, each UTF-16 unit → 3 + (code mod (vocab − 3)).
/// Encoding a concatenation is the concatenation of encodings, like tok512 on these texts.</summary>
public sealed class CharTokenizer(int vocab) : TextTokenizer
{
    public override string Description => "test characters";
    public override int VocabSize => vocab;
    public override int? BosId => 1;
    public override int? EosId => 2;
    public override bool AddBosByDefault => true;

    public override IReadOnlyList<int> Encode(string text, bool addBos) =>
        (addBos ? new[] { 1 } : Array.Empty<int>()).Concat(text.Select(c => 3 + c % (vocab - 3))).ToArray();

    public override string Decode(IReadOnlyList<int> ids) => new(ids.Where(i => i > 2).Select(i => (char)('a' + (i - 3) % 26)).ToArray());

    public override byte[] TokenBytes(int id, int? previousId) => id > 2 ? Encoding.UTF8.GetBytes(Decode(new[] { id })) : Array.Empty<byte>();

    public override bool IsSpecial(int id) => id <= 2;
}
