using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// Writes safetensors files that PyTorch's <c>safetensors</c> can read: keys sorted, <c>__metadata__</c>
/// with <c>format: pt</c>, header padded with spaces to a multiple of 8 bytes, written atomically.
/// </summary>
public static class SafetensorsWriter
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors.Select(kv => SafetensorsEntry.Of(kv.Key, kv.Value)).ToList(), metadata);

    /// <summary>Writes <paramref name="entries"/> to one file, producing each tensor's data only when it is written and
    /// releasing it before the next (see <see cref="SafetensorsEntry"/>).</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsEntry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sorted = entries.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        var meta = new JsonObject { ["format"] = "pt" };
        if (metadata is not null)
            foreach (var (k, v) in metadata)
                meta[k] = v;
        header["__metadata__"] = meta;

        long offset = 0;
        foreach (var e in sorted)
        {
            long bytes = e.Bytes;
            header[e.Name] = new JsonObject
            {
                ["dtype"] = SafetensorsDTypes.FromScalarType(e.DType).ToString(),
                ["shape"] = new JsonArray(e.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }

        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)padded));
            stream.Write(json);
            for (int i = json.Length; i < padded; i++)
                stream.WriteByte((byte)' ');
            int written = 0;
            foreach (var e in sorted)
            {
                var tensor = e.Produce();
                try
                {
                    if (tensor.dtype != e.DType || !tensor.shape.SequenceEqual(e.Shape))
                        throw new InvalidOperationException(
                            $"{path}: tensor {e.Name} was announced as {e.DType} [{string.Join(", ", e.Shape)}] but is {tensor.dtype} [{string.Join(", ", tensor.shape)}]");
                    WriteData(stream, tensor);
                }
                finally
                {
                    if (e.Owned)
                        tensor.Dispose();
                }

                if (++written == sorted.Count / 2)
                    FaultInjection.Point("safetensors-half-written");
            }
        });
    }

    private static void WriteData(Stream stream, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        var t = tensor.detach().cpu().contiguous();
        long total = t.numel() * t.element_size();
        if (total == 0)
            return;
        if (total <= int.MaxValue)
        {
            stream.Write(t.bytes);
            return;
        }

        var flat = t.view(-1);
        long chunk = (1L << 28) / t.element_size();
        for (long start = 0; start < flat.shape[0]; start += chunk)
        {
            using var piece = flat.narrow(0, start, Math.Min(chunk, flat.shape[0] - start)).clone();
            stream.Write(piece.bytes);
        }
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into <paramref name="directory"/> as <c>model.safetensors</c>, or, when they
    /// exceed <paramref name="maxShardBytes"/>, as <c>model-0000i-of-0000n.safetensors</c> shards plus
    /// <c>model.safetensors.index.json</c> (the Hugging Face layout).
    /// </summary>
    public static void WriteCheckpoint(string directory, IReadOnlyList<KeyValuePair<string, Tensor>> tensors,
        long maxShardBytes = 5L << 30) =>
        WriteCheckpoint(directory, tensors.Select(kv => SafetensorsEntry.Of(kv.Key, kv.Value)).ToList(), maxShardBytes);

    /// <summary>As above, for entries whose data is produced one tensor at a time.</summary>
    public static void WriteCheckpoint(string directory, IReadOnlyList<SafetensorsEntry> entries, long maxShardBytes = 5L << 30)
    {
        Directory.CreateDirectory(directory);
        var sorted = entries.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        long total = sorted.Sum(e => e.Bytes);
        string indexPath = Path.Combine(directory, IndexFileName);
        if (total <= maxShardBytes)
        {
            Write(Path.Combine(directory, SingleFileName), sorted);
            if (File.Exists(indexPath))
                File.Delete(indexPath);
            return;
        }

        var shards = new List<List<SafetensorsEntry>> { new() };
        long current = 0;
        foreach (var e in sorted)
        {
            long size = e.Bytes;
            if (current > 0 && current + size > maxShardBytes)
            {
                shards.Add(new());
                current = 0;
            }

            shards[^1].Add(e);
            current += size;
        }

        var weightMap = new JsonObject();
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Write(Path.Combine(directory, file), shards[i]);
            foreach (var e in shards[i])
                weightMap[e.Name] = file;
        }

        WriteIndex(directory, weightMap, total);
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
            File.Delete(single);
    }

    /// <summary>Writes <c>model.safetensors.index.json</c> into <paramref name="directory"/>: <paramref name="weightMap"/>
    /// (tensor name → file name) and the tensors' <paramref name="totalBytes"/>, the Hugging Face layout.</summary>
    public static void WriteIndex(string directory, JsonObject weightMap, long totalBytes) =>
        AtomicFile.WriteAllText(Path.Combine(directory, IndexFileName), new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = totalBytes },
            ["weight_map"] = weightMap,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}
