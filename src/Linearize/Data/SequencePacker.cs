namespace Linearize.Data;

/// <summary>
/// Concatenates examples and cuts the stream into fixed-length sequences (Liger <c>training/dataloader.py</c>
/// <c>ConcatDataset</c>: attention is not reset at example boundaries), dropping sequences with no labelled token.
/// The last partial sequence is dropped too, so every batch has the same shape.
/// </summary>
public static class SequencePacker
{
    public static List<TrainingExample> Pack(IEnumerable<TrainingExample> examples, int sequenceLength)
    {
        if (sequenceLength < 2)
            throw new LinearizeException($"--seq-len must be at least 2, got {sequenceLength}");
        var ids = new List<int>();
        var labels = new List<int>();
        foreach (var e in examples)
        {
            ids.AddRange(e.InputIds);
            labels.AddRange(e.Labels);
        }

        var packed = new List<TrainingExample>();
        for (int start = 0; start + sequenceLength <= ids.Count; start += sequenceLength)
        {
            var l = labels.GetRange(start, sequenceLength).ToArray();
            // Only labels at positions ≥ 1 can be predicted inside the sequence.
            if (l.Skip(1).All(x => x == TrainingExample.IgnoreIndex))
                continue;
            packed.Add(new TrainingExample(ids.GetRange(start, sequenceLength).ToArray(), l));
        }

        return packed;
    }

    /// <summary>A deterministic permutation of <c>0..n-1</c> from <paramref name="seed"/> (Fisher–Yates on a seeded <see cref="Random"/>).</summary>
    public static int[] Shuffle(int n, int seed)
    {
        var order = Enumerable.Range(0, n).ToArray();
        var rng = new Random(seed);
        for (int i = n - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }
}
