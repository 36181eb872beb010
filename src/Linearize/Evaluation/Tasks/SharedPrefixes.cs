namespace Linearize.Evaluation.Tasks;

/// <summary>Splits contexts in token order into families that share a long prefix, so the prefix is computed once.</summary>
internal static class SharedPrefixes
{
    /// <summary>
    /// Consecutive contexts of <paramref name="sorted"/> whose common prefix stays at least <paramref name="minShared"/>
    /// tokens long form a family of at least two; every other context is a family of its own with prefix 0. A prefix
    /// stops one token short of its shortest member, so every member has a remainder whose last logits predict its
    /// continuations. Returns (prefix length, member indices) covering every index once.
    /// </summary>
    public static List<(int PrefixLength, List<int> Members)> Families(IReadOnlyList<int[]> sorted, int minShared)
    {
        var families = new List<(int, List<int>)>();
        int start = 0;
        while (start < sorted.Count)
        {
            var first = sorted[start];
            int common = first.Length - 1, end = start + 1;
            while (end < sorted.Count)
            {
                var next = sorted[end];
                int lcp = 0, limit = Math.Min(common, next.Length - 1);
                while (lcp < limit && next[lcp] == first[lcp])
                    lcp++;
                if (lcp < minShared)
                    break;
                common = lcp;
                end++;
            }

            if (end - start >= 2 && common >= minShared)
                families.Add((common, Enumerable.Range(start, end - start).ToList()));
            else
            {
                end = start + 1;
                families.Add((0, new List<int> { start }));
            }

            start = end;
        }

        return families;
    }
}
