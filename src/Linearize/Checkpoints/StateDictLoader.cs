using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// Strict state-dict loading: every model tensor must be in the checkpoint with the same shape, and every checkpoint
/// tensor must belong to the model (or be listed as ignorable). Problems are reported by name, all at once,
/// before any weight is touched. Values are converted to the model's dtype on copy.
/// </summary>
public static class StateDictLoader
{
    private const int MaxNamesShown = 8;

    /// <summary>A source of named tensors (a safetensors checkpoint, an in-memory dictionary, a llama2.c import).</summary>
    public interface ITensorSource
    {
        string Description { get; }
        IReadOnlyCollection<string> Names { get; }
        long[] Shape(string name);
        Tensor Read(string name);
    }

    /// <param name="partOfCheckpoint">The model holds only some of the checkpoint's tensors (a slice of layers):
    /// every model tensor must still be there, but the checkpoint's others are not read or reported.</param>
    public static void Load(nn.Module model, ITensorSource source, IReadOnlySet<string>? ignorable = null, bool partOfCheckpoint = false)
    {
        var expected = model.state_dict();
        var names = new HashSet<string>(source.Names, StringComparer.Ordinal);
        var missing = expected.Keys.Where(k => !names.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var unexpected = names.Where(k => !partOfCheckpoint && !expected.ContainsKey(k) && !(ignorable?.Contains(k) ?? false))
            .OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = new List<string>();
        foreach (var (name, tensor) in expected)
        {
            if (!names.Contains(name))
                continue;
            var shape = source.Shape(name);
            if (!shape.SequenceEqual(tensor.shape))
                mismatched.Add($"{name} (checkpoint [{string.Join(", ", shape)}], model [{string.Join(", ", tensor.shape)}])");
        }

        var problems = new List<string>();
        if (missing.Count > 0)
            problems.Add($"missing {missing.Count} tensor(s): {List(missing)}");
        if (unexpected.Count > 0)
            problems.Add($"unexpected {unexpected.Count} tensor(s): {List(unexpected)}");
        if (mismatched.Count > 0)
            problems.Add($"{mismatched.Count} tensor(s) with the wrong shape: {List(mismatched)}");
        if (problems.Count > 0)
            throw new LinearizeException($"{source.Description}: {string.Join("; ", problems)}");

        using var noGrad = no_grad();
        foreach (var (name, tensor) in expected)
        {
            using var value = source.Read(name);
            tensor.copy_(value);
        }
    }

    private static string List(List<string> names) =>
        string.Join(", ", names.Take(MaxNamesShown)) + (names.Count > MaxNamesShown ? $", … ({names.Count - MaxNamesShown} more)" : "");

    /// <summary>Adapts a <see cref="SafetensorsCheckpoint"/>.</summary>
    public sealed class CheckpointSource(SafetensorsCheckpoint checkpoint) : ITensorSource
    {
        public string Description => checkpoint.Source;
        public IReadOnlyCollection<string> Names => checkpoint.Names;
        public long[] Shape(string name) => checkpoint.GetInfo(name).Shape;
        public Tensor Read(string name) => checkpoint.Read(name);
    }

    /// <summary>Adapts an in-memory dictionary (tensors are cloned on read, so the dictionary stays valid).</summary>
    public sealed class DictionarySource(string description, IReadOnlyDictionary<string, Tensor> tensors) : ITensorSource
    {
        public string Description => description;
        public IReadOnlyCollection<string> Names => tensors.Keys.ToList();
        public long[] Shape(string name) => tensors[name].shape;
        public Tensor Read(string name) => tensors[name].clone();
    }
}
