namespace Linearize.Data;

/// <summary>
/// Multi-query associative recall (MQAR; Arora et al., "Zoology", 2023): <see cref="Pairs"/> key–value pairs at the
/// start of a sequence, then queries — a key followed by its value — scattered over the rest, the other positions
/// holding a filler token. The loss and accuracy are taken only on the values after query keys, so the task can be
/// solved only by recalling a pair seen <c>distance</c> tokens earlier.
/// </summary>
public sealed record RecallTaskOptions
{
    /// <summary>Distinct key tokens (ids 1 … K).</summary>
    public int Keys { get; init; } = 64;

    /// <summary>Distinct value tokens (ids K+1 … K+V); chance accuracy is 1/V.</summary>
    public int Values { get; init; } = 64;

    /// <summary>Key–value pairs stated at the start of each sequence (keys distinct within a sequence).</summary>
    public int Pairs { get; init; } = 16;

    /// <summary>Queries per sequence: each pair queried once in random order (up to <see cref="Pairs"/>), then again at
    /// random; a distance is always to the nearest earlier statement of the pair.</summary>
    public int Queries { get; init; } = 16;

    public int SequenceLength { get; init; } = 512;

    /// <summary>Queries are placed no earlier than this many tokens after the end of the pairs (0: right after them);
    /// raising it pushes the key-to-query distances past a sliding window.</summary>
    public int MinGap { get; init; }

    /// <summary>The filler token (id 0).</summary>
    public const int Filler = 0;

    /// <summary>Vocabulary the model needs: filler, keys, values.</summary>
    public int VocabularySize => 1 + Keys + Values;

    public void Validate()
    {
        if (Keys < 1 || Values < 2 || Pairs < 1 || Queries < 1)
            throw new LinearizeException($"recall task: keys ≥ 1, values ≥ 2, pairs ≥ 1 and queries ≥ 1 (got {Keys}, {Values}, {Pairs}, {Queries})");
        if (Pairs > Keys)
            throw new LinearizeException($"recall task: {Pairs} pairs need at least as many keys, got {Keys}");
        int room = SequenceLength - 2 * Pairs - MinGap;
        if (room < 2 * Queries)
            throw new LinearizeException(
                $"recall task: {Queries} queries (2 tokens each) do not fit in a sequence of {SequenceLength} after {Pairs} pairs and a gap of {MinGap}");
    }
}
