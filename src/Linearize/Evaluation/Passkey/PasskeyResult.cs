namespace Linearize.Evaluation.Passkey;

/// <summary>Passkey accuracy by length × depth, with its margins (docs/EVALUATION.md §4).</summary>
public sealed class PasskeyResult
{
    public PasskeyResult(IReadOnlyList<PasskeyOutcome> outcomes)
    {
        Outcomes = outcomes;
        Lengths = outcomes.Select(o => o.Sample.Length).Distinct().Order().ToArray();
        Depths = outcomes.Select(o => o.Sample.Depth).Distinct().Order().ToArray();
        Cells = Lengths.SelectMany(l => Depths.Select(d => Cell(o => o.Sample.Length == l && o.Sample.Depth == d, l, d))).ToArray();
        ByLength = Lengths.Select(l => Cell(o => o.Sample.Length == l, l, null)).ToArray();
        ByDepth = Depths.Select(d => Cell(o => o.Sample.Depth == d, null, d)).ToArray();
        All = Cell(_ => true, null, null);
    }

    public IReadOnlyList<PasskeyOutcome> Outcomes { get; }

    public IReadOnlyList<int> Lengths { get; }

    public IReadOnlyList<double> Depths { get; }

    /// <summary>Every length × depth pair, lengths outer; a pair without samples has <c>Samples == 0</c>.</summary>
    public IReadOnlyList<PasskeyCell> Cells { get; }

    public IReadOnlyList<PasskeyCell> ByLength { get; }

    public IReadOnlyList<PasskeyCell> ByDepth { get; }

    public PasskeyCell All { get; }

    public PasskeyCell Cell(int length, double depth) => Cells.Single(c => c.Length == length && c.Depth == depth);

    private PasskeyCell Cell(Func<PasskeyOutcome, bool> where, int? length, double? depth)
    {
        var chosen = Outcomes.Where(where).ToList();
        return new PasskeyCell(length, depth, chosen.Count, chosen.Count(o => o.Correct));
    }
}
