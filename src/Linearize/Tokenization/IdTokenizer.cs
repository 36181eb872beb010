using System.Globalization;
using System.Text;

namespace Linearize.Tokenization;

/// <summary>
/// Token ids as text, for models of synthetic tasks (recall) that have no text tokenizer: <c>"3 70 0 5"</c> encodes to
/// those ids and ids decode to space-separated numbers. No BOS, no EOS.
/// </summary>
public sealed class IdTokenizer(int vocabSize) : TextTokenizer
{
    public override string Description => $"token ids ({vocabSize}; no text tokenizer)";

    public override int VocabSize => vocabSize;

    public override int? BosId => null;

    public override int? EosId => null;

    public override bool AddBosByDefault => false;

    public override IReadOnlyList<int> Encode(string text, bool addBos)
    {
        var ids = new List<int>();
        foreach (var part in text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= vocabSize)
                throw new LinearizeException($"this model has no text tokenizer: give token ids in [0, {vocabSize}) separated by spaces, not '{part}'");
            ids.Add(id);
        }

        return ids;
    }

    public override string Decode(IReadOnlyList<int> ids) => string.Join(" ", ids);

    public override byte[] TokenBytes(int id, int? previousId) => Encoding.UTF8.GetBytes(previousId is null ? $"{id}" : $" {id}");

    public override bool IsSpecial(int id) => false;
}
