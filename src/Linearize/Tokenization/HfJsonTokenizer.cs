using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Linearize.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a byte-level BPE model (Llama 3, SmolLM, Qwen2, GPT-2).
/// What Microsoft.ML.Tokenizers 2.0.1 lacks is written here: parsing the file, splitting out added/special tokens,
/// the pre-tokenizer (<c>Split</c> regex, <c>ByteLevel</c> with GPT-2's regex, <c>Digits</c>) and
/// <c>ignore_merges</c>; each pre-token is then encoded by the library's <see cref="BpeTokenizer"/>.
/// </summary>
public sealed class HfJsonTokenizer : TextTokenizer
{
    /// <summary>GPT-2's pre-tokenizer regex, used by a <c>ByteLevel</c> pre-tokenizer with <c>use_regex: true</c>.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _idToToken;
    private readonly Dictionary<string, int> _added;      // added tokens matched verbatim in the input
    private readonly HashSet<int> _special;
    private readonly Regex? _addedRegex;
    private readonly List<Regex> _splitters;
    private readonly bool _ignoreMerges;

    private HfJsonTokenizer(string path, BpeTokenizer bpe, Dictionary<string, int> vocab, Dictionary<string, int> added,
        HashSet<int> special, List<Regex> splitters, bool ignoreMerges, int? bos, int? eos, bool addBos)
    {
        Path = path;
        _bpe = bpe;
        _vocab = vocab;
        _added = added;
        _special = special;
        _splitters = splitters;
        _ignoreMerges = ignoreMerges;
        BosId = bos;
        EosId = eos;
        AddBosByDefault = addBos && bos is not null;
        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max(), added.Count == 0 ? 0 : added.Values.Max()) + 1;
        _idToToken = new string[size];
        foreach (var (t, id) in vocab)
            _idToToken[id] = t;
        foreach (var (t, id) in added)
            _idToToken[id] = t;
        if (added.Count > 0)
            _addedRegex = new Regex(string.Join("|", added.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)),
                RegexOptions.CultureInvariant);
    }

    public string Path { get; }

    public override string Description => $"byte-level BPE ({VocabSize} tokens) from {System.IO.Path.GetFileName(Path)}";

    public override int VocabSize => _idToToken.Length;

    public override int? BosId { get; }

    public override int? EosId { get; }

    public override bool AddBosByDefault { get; }

    public override bool IsSpecial(int id) => _special.Contains(id);

    /// <summary>True when <paramref name="path"/> is a tokenizer.json whose model is a SentencePiece-style BPE
    /// (byte fallback, ▁ for spaces) rather than byte-level BPE.</summary>
    public static bool IsSentencePieceStyle(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.TryGetProperty("model", out var model) &&
               model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
    }

    public static HfJsonTokenizer Load(string path, string? configPath = null)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new LinearizeException($"{path}: not valid JSON ({JsonErrorText.Describe(e)})");
        }

        using var _ = doc;
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new LinearizeException($"{path}: missing 'model'");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        if (type != "BPE")
            throw new LinearizeException($"{path}: tokenizer model type '{type}' is not supported (only byte-level BPE)");
        if (model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True)
            throw new LinearizeException(
                $"{path}: SentencePiece-style BPE (byte_fallback) is not supported from tokenizer.json; use the model's tokenizer.model");
        if (!model.TryGetProperty("vocab", out var vocabElement) || vocabElement.ValueKind != JsonValueKind.Object)
            throw new LinearizeException($"{path}: missing 'model.vocab'");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabElement.EnumerateObject())
            vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var mergesElement))
        {
            foreach (var m in mergesElement.EnumerateArray())
            {
                // Older files store "a b"; newer ones store ["a", "b"].
                merges.Add(m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!);
            }
        }

        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var addedElement))
        {
            foreach (var a in addedElement.EnumerateArray())
            {
                string content = a.GetProperty("content").GetString()!;
                int id = a.GetProperty("id").GetInt32();
                added[content] = id;
                if (a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True)
                    special.Add(id);
            }
        }

        var splitters = ParsePreTokenizer(path, root.TryGetProperty("pre_tokenizer", out var pre) ? pre : default);

        // BOS/EOS: tokenizer_config.json names them; a TemplateProcessing post-processor says whether BOS is added.
        configPath ??= System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path) ?? ".", "tokenizer_config.json");
        string? bosToken = null, eosToken = null;
        bool? addBosConfig = null;
        if (File.Exists(configPath))
        {
            using var cfg = JsonDocument.Parse(File.ReadAllBytes(configPath));
            bosToken = TokenString(cfg.RootElement, "bos_token");
            eosToken = TokenString(cfg.RootElement, "eos_token");
            if (cfg.RootElement.TryGetProperty("add_bos_token", out var ab) && ab.ValueKind is JsonValueKind.True or JsonValueKind.False)
                addBosConfig = ab.GetBoolean();
        }

        string? templateBos = null;
        if (root.TryGetProperty("post_processor", out var post) && post.ValueKind == JsonValueKind.Object)
            templateBos = TemplateLeadingSpecial(post);
        bosToken ??= templateBos;
        int? Id(string? token) => token is null ? null : added.TryGetValue(token, out int i) ? i : vocab.TryGetValue(token, out int j) ? j : null;
        bool addBos = addBosConfig ?? (templateBos is not null);

        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = null,
        };
        var bpe = BpeTokenizer.Create(options);
        return new HfJsonTokenizer(path, bpe, vocab, added, special, splitters, ignoreMerges, Id(bosToken), Id(eosToken), addBos);
    }

    private static string? TokenString(JsonElement cfg, string key)
    {
        if (!cfg.TryGetProperty(key, out var v))
            return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
            _ => null,
        };
    }

    private static string? TemplateLeadingSpecial(JsonElement post)
    {
        string? type = post.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == "Sequence" && post.TryGetProperty("processors", out var procs))
            return procs.EnumerateArray().Select(TemplateLeadingSpecial).FirstOrDefault(s => s is not null);
        if (type != "TemplateProcessing" || !post.TryGetProperty("single", out var single))
            return null;
        var first = single.EnumerateArray().FirstOrDefault();
        return first.ValueKind == JsonValueKind.Object && first.TryGetProperty("SpecialToken", out var st)
            ? st.GetProperty("id").GetString()
            : null;
    }

    private static List<Regex> ParsePreTokenizer(string path, JsonElement pre)
    {
        var result = new List<Regex>();
        if (pre.ValueKind != JsonValueKind.Object)
            return result;
        string type = pre.GetProperty("type").GetString()!;
        switch (type)
        {
            case "Sequence":
                foreach (var p in pre.GetProperty("pretokenizers").EnumerateArray())
                    result.AddRange(ParsePreTokenizer(path, p));
                break;
            case "Split":
                var pattern = pre.GetProperty("pattern");
                string regex = pattern.TryGetProperty("Regex", out var r) ? r.GetString()! : Regex.Escape(pattern.GetProperty("String").GetString()!);
                string behavior = pre.TryGetProperty("behavior", out var b) ? b.GetString()! : "Isolated";
                bool invert = pre.TryGetProperty("invert", out var inv) && inv.GetBoolean();
                if (behavior != "Isolated" || invert)
                    throw new LinearizeException($"{path}: Split pre-tokenizer with behavior '{behavior}' invert={invert} is not supported");
                result.Add(Isolating(regex));
                break;
            case "ByteLevel":
                if (pre.TryGetProperty("add_prefix_space", out var aps) && aps.GetBoolean())
                    throw new LinearizeException($"{path}: ByteLevel add_prefix_space=true is not supported");
                if (!pre.TryGetProperty("use_regex", out var ur) || ur.GetBoolean())
                    result.Add(Isolating(Gpt2Pattern));
                break;
            case "Digits":
                bool individual = pre.TryGetProperty("individual_digits", out var ind) && ind.GetBoolean();
                result.Add(Isolating(individual ? @"\p{N}" : @"\p{N}+"));
                break;
            default:
                throw new LinearizeException($"{path}: pre-tokenizer '{type}' is not supported (supported: Sequence, Split, ByteLevel, Digits)");
        }

        return result;
    }

    /// <summary>An "Isolated" split: matches become pieces and so do the gaps between them.</summary>
    private static Regex Isolating(string pattern) => new(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);

    private IEnumerable<string> PreTokenize(string text)
    {
        IEnumerable<string> pieces = new[] { text };
        foreach (var splitter in _splitters)
            pieces = pieces.SelectMany(p => Split(splitter, p));
        return pieces;
    }

    private static IEnumerable<string> Split(Regex regex, string text)
    {
        int last = 0;
        foreach (Match m in regex.Matches(text))
        {
            if (m.Length == 0)
                continue;
            if (m.Index > last)
                yield return text[last..m.Index];
            yield return m.Value;
            last = m.Index + m.Length;
        }

        if (last < text.Length)
            yield return text[last..];
    }

    public override IReadOnlyList<int> Encode(string text, bool addBos)
    {
        var ids = new List<int>();
        if (addBos && BosId is int bos)
            ids.Add(bos);
        int last = 0;
        if (_addedRegex is not null)
        {
            foreach (Match m in _addedRegex.Matches(text))
            {
                EncodeOrdinary(text[last..m.Index], ids);
                ids.Add(_added[m.Value]);
                last = m.Index + m.Length;
            }
        }

        EncodeOrdinary(text[last..], ids);
        return ids;
    }

    private void EncodeOrdinary(string text, List<int> ids)
    {
        if (text.Length == 0)
            return;
        foreach (var piece in PreTokenize(text))
        {
            // ignore_merges (Llama 3): a pre-token that is itself a vocabulary entry is emitted as-is.
            if (_ignoreMerges && _vocab.TryGetValue(ByteLevelAlphabet.Encode(Encoding.UTF8.GetBytes(piece)), out int id))
            {
                ids.Add(id);
                continue;
            }

            ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
        }
    }

    public override byte[] TokenBytes(int id, int? previousId)
    {
        if (id < 0 || id >= _idToToken.Length || _idToToken[id] is null)
            throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is not in the vocabulary");
        if (_special.Contains(id))
            return Array.Empty<byte>();
        string token = _idToToken[id];
        if (_added.ContainsKey(token))
            return Encoding.UTF8.GetBytes(token);
        return ByteLevelAlphabet.Decode(token) ?? Encoding.UTF8.GetBytes(token);
    }

    public override string Decode(IReadOnlyList<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
            bytes.AddRange(TokenBytes(id, null));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
