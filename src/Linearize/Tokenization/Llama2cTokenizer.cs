using System.Text;

namespace Linearize.Tokenization;

/// <summary>
/// karpathy/llama2.c's tokenizer (<c>tok*.bin</c>: int32 max_token_length, then per id float32 score, int32 length,
/// bytes). Encoding is an exact port of <c>run.c</c> <c>encode</c> (commit 350e04f): BOS, a dummy-prefix <c>" "</c>
/// token when the text is non-empty, one token per UTF-8 code point (or its bytes as <c>&lt;0xNN&gt;</c> fallback tokens,
/// id = byte + 3), then repeatedly merge the adjacent pair whose concatenation is in the vocabulary with the
/// highest score (leftmost on ties).
/// </summary>
public sealed class Llama2cTokenizer : TextTokenizer
{
    private const int ByteFallbackOffset = 3; // ids 0..2 are <unk>, <s>, </s>; 3..258 are <0x00>..<0xFF>
    private static readonly Encoding Latin1 = Encoding.Latin1; // maps bytes 1:1 to chars: byte-exact string keys

    private readonly string[] _pieces;   // raw piece bytes as Latin-1 strings
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _lookup;
    private readonly byte[]?[] _byteValue; // for <0xNN> pieces, the byte

    private Llama2cTokenizer(string path, string[] pieces, float[] scores)
    {
        Path = path;
        _pieces = pieces;
        _scores = scores;
        _lookup = new Dictionary<string, int>(StringComparer.Ordinal);
        _byteValue = new byte[]?[pieces.Length];
        for (int i = 0; i < pieces.Length; i++)
        {
            _lookup.TryAdd(pieces[i], i); // run.c bsearches a sorted copy; duplicates do not occur in practice
            string p = pieces[i];
            if (p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) && p[5] == '>' &&
                byte.TryParse(p.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                _byteValue[i] = new[] { b };
        }
    }

    public string Path { get; }

    public override string Description => $"llama2.c BPE ({_pieces.Length} tokens) from {System.IO.Path.GetFileName(Path)}";

    public override int VocabSize => _pieces.Length;

    public override int? BosId => 1;

    public override int? EosId => 2;

    public override bool AddBosByDefault => true;

    public override bool IsSpecial(int id) => id is 0 or 1 or 2;

    public static Llama2cTokenizer Load(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        using var reader = new BinaryReader(File.OpenRead(path));
        long length = reader.BaseStream.Length;
        if (length < 4)
            throw new LinearizeException($"{path}: truncated llama2.c tokenizer ({length} bytes)");
        int maxTokenLength = reader.ReadInt32();
        if (maxTokenLength <= 0 || maxTokenLength > 1 << 16)
            throw new LinearizeException($"{path}: not a llama2.c tokenizer (max_token_length {maxTokenLength})");
        var pieces = new List<string>();
        var scores = new List<float>();
        while (reader.BaseStream.Position < length)
        {
            if (length - reader.BaseStream.Position < 8)
                throw new LinearizeException($"{path}: truncated entry for token {pieces.Count}");
            float score = reader.ReadSingle();
            int len = reader.ReadInt32();
            if (len < 0 || len > maxTokenLength || len > length - reader.BaseStream.Position)
                throw new LinearizeException($"{path}: token {pieces.Count} has invalid length {len}");
            pieces.Add(Latin1.GetString(reader.ReadBytes(len)));
            scores.Add(score);
        }

        if (pieces.Count < ByteFallbackOffset + 256)
            throw new LinearizeException($"{path}: only {pieces.Count} tokens; a llama2.c vocabulary has 3 control and 256 byte tokens first");
        return new Llama2cTokenizer(path, pieces.ToArray(), scores.ToArray());
    }

    public override IReadOnlyList<int> Encode(string text, bool addBos)
    {
        var tokens = Merge(InitialTokens(text));
        if (addBos)
            tokens.Insert(0, BosId!.Value);
        return tokens;
    }

    /// <summary>
    /// The naive twin of <see cref="Encode(string, bool)"/>: run.c's O(n²) merge loop verbatim (rescan all pairs,
    /// merge the best, repeat). Used by tests to check the heap-based merge on random text.
    /// </summary>
    internal List<int> EncodeReference(string text)
    {
        var tokens = InitialTokens(text);
        while (true)
        {
            float bestScore = -1e10f;
            int bestId = -1, bestIndex = -1;
            for (int k = 0; k < tokens.Count - 1; k++)
            {
                if (_lookup.TryGetValue(_pieces[tokens[k]] + _pieces[tokens[k + 1]], out int id) && _scores[id] > bestScore)
                {
                    bestScore = _scores[id];
                    bestId = id;
                    bestIndex = k;
                }
            }

            if (bestIndex < 0)
                return tokens;
            tokens[bestIndex] = bestId;
            tokens.RemoveAt(bestIndex + 1);
        }
    }

    /// <summary>The dummy-prefix token, then one token per UTF-8 code point or its byte-fallback tokens.</summary>
    private List<int> InitialTokens(string text)
    {
        var tokens = new List<int>();
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        if (utf8.Length > 0 && _lookup.TryGetValue(" ", out int dummyPrefix))
            tokens.Add(dummyPrefix);

        // One token per code point: a leading byte plus up to three continuation bytes (run.c caps at 4 bytes).
        int i = 0;
        while (i < utf8.Length)
        {
            int start = i++;
            while (i < utf8.Length && (utf8[i] & 0xC0) == 0x80 && i - start < 4)
                i++;
            string codePoint = Latin1.GetString(utf8, start, i - start);
            if (_lookup.TryGetValue(codePoint, out int id))
                tokens.Add(id);
            else
                for (int b = start; b < i; b++)
                    tokens.Add(utf8[b] + ByteFallbackOffset);
        }

        return tokens;
    }

    /// <summary>
    /// run.c's merge rule — repeatedly merge the adjacent pair whose concatenation is in the vocabulary with the
    /// highest score, the leftmost on ties — in O(n log n) with a heap and a linked list instead of run.c's O(n²)
    /// rescans (which take minutes on a 20,000-token document). Stale heap entries are skipped by version checks.
    /// </summary>
    private List<int> Merge(List<int> initial)
    {
        int n = initial.Count;
        var id = initial.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var version = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
            alive[i] = true;
        }

        // Priority: highest score first, then the leftmost pair (a node's original index keeps sequence order).
        var heap = new PriorityQueue<(int Left, int Right, int LeftVersion, int RightVersion, int Merged), (float, int)>();
        void Consider(int left)
        {
            if (left < 0 || next[left] < 0)
                return;
            int right = next[left];
            if (_lookup.TryGetValue(_pieces[id[left]] + _pieces[id[right]], out int merged))
                heap.Enqueue((left, right, version[left], version[right], merged), (-_scores[merged], left));
        }

        for (int i = 0; i < n - 1; i++)
            Consider(i);
        while (heap.TryDequeue(out var e, out _))
        {
            if (!alive[e.Left] || !alive[e.Right] || next[e.Left] != e.Right ||
                version[e.Left] != e.LeftVersion || version[e.Right] != e.RightVersion)
                continue;
            id[e.Left] = e.Merged;
            version[e.Left]++;
            alive[e.Right] = false;
            next[e.Left] = next[e.Right];
            if (next[e.Right] >= 0)
                prev[next[e.Right]] = e.Left;
            Consider(prev[e.Left]);
            Consider(e.Left);
        }

        var result = new List<int>(n);
        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i])
            result.Add(id[i]);
        return result;
    }

    public override byte[] TokenBytes(int id, int? previousId)
    {
        if (id < 0 || id >= _pieces.Length)
            throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");
        if (IsSpecial(id))
            return Array.Empty<byte>();
        if (_byteValue[id] is { } raw)
            return raw;
        string piece = _pieces[id];
        // run.c decode: "following BOS (1) token, sentencepiece decoder strips any leading whitespace"; the same
        // applies at the very start of a stream encoded without BOS (the dummy prefix).
        if ((previousId is null || previousId == BosId) && piece.StartsWith(' '))
            piece = piece[1..];
        return Latin1.GetBytes(piece);
    }

    public override string Decode(IReadOnlyList<int> ids)
    {
        var bytes = new List<byte>();
        int? previous = null;
        foreach (int id in ids)
        {
            bytes.AddRange(TokenBytes(id, previous));
            previous = id;
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
