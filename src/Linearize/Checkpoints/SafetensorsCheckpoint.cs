using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// The tensors of a Hugging Face checkpoint: one <c>model.safetensors</c>, or the shards listed by
/// <c>model.safetensors.index.json</c> (<c>weight_map: {tensor: shard file}</c>). Every shard is validated on open,
/// and the index must agree with the shards.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _byTensor;

    private SafetensorsCheckpoint(string source, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> byTensor)
    {
        Source = source;
        _files = files;
        _byTensor = byTensor;
    }

    /// <summary>The directory or file this checkpoint was opened from.</summary>
    public string Source { get; }

    public IReadOnlyCollection<string> Names => _byTensor.Keys;

    public IReadOnlyList<SafetensorsFile> Files => _files;

    public long SizeOnDisk => _files.Sum(f => new FileInfo(f.FilePath).Length);

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafetensorsTensorInfo GetInfo(string name) => File(name).GetInfo(name);

    public Tensor Read(string name) => File(name).Read(name);

    /// <summary>Tensor <paramref name="name"/> as float32 values into <paramref name="destination"/> (see
    /// <see cref="SafetensorsFile.ReadInto"/>).</summary>
    public void ReadInto(string name, long offset, Span<float> destination) => File(name).ReadInto(name, offset, destination);

    /// <summary>Rows <paramref name="rows"/> of the floating-point matrix <paramref name="name"/> as a new float32
    /// tensor <c>[rows.Count, columns]</c>, each row read straight from the mapped file: an embedding lookup that never
    /// holds the table (BF16 and F16 widen exactly, so the rows equal those of the table loaded as float32).</summary>
    public Tensor ReadRows(string name, IReadOnlyList<int> rows)
    {
        var info = GetInfo(name);
        if (info.Shape.Length != 2)
            throw new CheckpointFormatException(Source, name, $"has shape {SafetensorsFile.DescribeShape(info.Shape)}, not a matrix");
        long columns = info.Shape[1];
        var result = torch.empty(new long[] { rows.Count, columns }, ScalarType.Float32);
        try
        {
            var values = MemoryMarshal.Cast<byte, float>(result.bytes);
            for (int r = 0; r < rows.Count; r++)
            {
                if (rows[r] < 0 || rows[r] >= info.Shape[0])
                    throw new ArgumentOutOfRangeException(nameof(rows), $"{name} has {info.Shape[0]} rows, asked for row {rows[r]}");
                ReadInto(name, rows[r] * columns, values.Slice((int)(r * columns), (int)columns));
            }
        }
        catch
        {
            result.Dispose();
            throw;
        }

        return result;
    }

    /// <summary>See <see cref="SafetensorsFile.TryReadBFloat16Into"/>.</summary>
    public bool TryReadBFloat16Into(string name, long offset, Span<ushort> destination) =>
        File(name).TryReadBFloat16Into(name, offset, destination);

    /// <summary>See <see cref="SafetensorsFile.MapInPlace"/>: valid until this checkpoint is disposed.</summary>
    public unsafe byte* MapInPlace(string name) => File(name).MapInPlace(name);

    /// <summary>True when tensor <paramref name="name"/> is stored as BF16.</summary>
    public bool IsBFloat16(string name) => GetInfo(name).DType == SafetensorsDType.BF16;

    private SafetensorsFile File(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f : throw new CheckpointFormatException(Source, name, "not present in the checkpoint");

    /// <summary>True when <paramref name="directory"/> holds a single-file or sharded safetensors checkpoint.</summary>
    public static bool Exists(string directory) =>
        System.IO.File.Exists(Path.Combine(directory, SafetensorsWriter.IndexFileName)) ||
        System.IO.File.Exists(Path.Combine(directory, SafetensorsWriter.SingleFileName));

    /// <summary>Opens a checkpoint directory (index or single file) or a single <c>.safetensors</c> file.</summary>
    public static SafetensorsCheckpoint Open(string path)
    {
        if (System.IO.File.Exists(path))
            return FromFiles(path, new[] { path }, null);
        if (!Directory.Exists(path))
            throw new LinearizeException($"{path}: no such file or directory");

        string index = Path.Combine(path, SafetensorsWriter.IndexFileName);
        if (System.IO.File.Exists(index))
            return OpenIndex(path, index);
        string single = Path.Combine(path, SafetensorsWriter.SingleFileName);
        if (System.IO.File.Exists(single))
            return FromFiles(path, new[] { single }, null);
        throw new LinearizeException($"{path}: no {SafetensorsWriter.SingleFileName} or {SafetensorsWriter.IndexFileName} found");
    }

    private static SafetensorsCheckpoint OpenIndex(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(System.IO.File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, "missing 'weight_map' object");
            weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(indexPath, p.Name, "weight_map value is not a file name");
                weightMap[p.Name] = p.Value.GetString()!;
            }
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"not valid JSON ({JsonErrorText.Describe(e)})");
        }

        var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).ToList();
        foreach (var shard in shardNames)
            if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                throw new CheckpointFormatException(indexPath, $"shard name '{shard}' must be a plain file name");
        var checkpoint = FromFiles(directory, shardNames.Select(s => Path.Combine(directory, s)), indexPath);
        foreach (var (tensor, shard) in weightMap)
        {
            var file = checkpoint._files.First(f => Path.GetFileName(f.FilePath) == shard);
            if (!file.Contains(tensor))
            {
                checkpoint.Dispose();
                throw new CheckpointFormatException(indexPath, tensor, $"listed in weight_map under {shard}, which does not contain it");
            }
        }

        return checkpoint;
    }

    private static SafetensorsCheckpoint FromFiles(string source, IEnumerable<string> paths, string? indexPath)
    {
        var files = new List<SafetensorsFile>();
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var path in paths)
            {
                if (!System.IO.File.Exists(path))
                    throw new CheckpointFormatException(indexPath ?? path, $"shard {Path.GetFileName(path)} is missing");
                var file = SafetensorsFile.Open(path);
                files.Add(file);
                foreach (var name in file.Names)
                {
                    if (byTensor.TryGetValue(name, out var other))
                        throw new CheckpointFormatException(path, name, $"also stored in {other.FilePath}");
                    byTensor[name] = file;
                }
            }
        }
        catch
        {
            foreach (var f in files)
                f.Dispose();
            throw;
        }

        return new SafetensorsCheckpoint(source, files, byTensor);
    }

    public void Dispose()
    {
        foreach (var f in _files)
            f.Dispose();
    }
}
