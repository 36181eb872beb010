namespace Linearize.Evaluation.Tasks;

/// <summary>Orders and compares token sequences element by element (a shorter sequence before its extensions).</summary>
internal sealed class TokenSequenceComparer : IComparer<int[]>, IEqualityComparer<int[]>
{
    public static readonly TokenSequenceComparer Instance = new();

    public int Compare(int[]? a, int[]? b)
    {
        for (int i = 0; i < Math.Min(a!.Length, b!.Length); i++)
            if (a[i] != b[i])
                return a[i].CompareTo(b[i]);
        return a.Length.CompareTo(b.Length);
    }

    public bool Equals(int[]? a, int[]? b) => a.AsSpan().SequenceEqual(b);

    public int GetHashCode(int[] tokens)
    {
        var hash = new HashCode();
        hash.AddBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan()));
        return hash.ToHashCode();
    }
}
