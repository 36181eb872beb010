using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints.Authors;

/// <summary>
/// Reads a <c>torch.save</c> file (the zip layout of PyTorch ≥ 1.6: <c>&lt;root&gt;/data.pkl</c>,
/// <c>&lt;root&gt;/data/&lt;key&gt;</c> per storage, <c>byteorder</c>, <c>version</c>) without running pickled code:
/// only tensors and plain containers (dict / OrderedDict, list, tuple, str, int, float, bool, None) are accepted, and
/// anything else is a one-line error naming the file (<see cref="RestrictedUnpickler"/>). Tensors come back as
/// contiguous CPU tensors in their stored dtype; the caller disposes them.
/// </summary>
public static class PtReader
{
    private const int MaxDepth = 64;

    /// <summary>The whole pickled value: dicts as <c>Dictionary&lt;object, object?&gt;</c> (keys are strings or
    /// numbers), lists as <c>List&lt;object?&gt;</c>, tuples as <c>object?[]</c>, tensors as <see cref="Tensor"/>.</summary>
    public static object? Load(string path)
    {
        using var archive = Open(path);
        string root = Root(archive, path);
        var byteOrder = archive.GetEntry(root + "byteorder");
        if (byteOrder is not null && Text(byteOrder, path).Trim() != "little")
            throw new CheckpointFormatException(path, "stored big-endian (byteorder is not 'little'); only little-endian files are read");
        var pickle = archive.GetEntry(root + "data.pkl") ?? throw new CheckpointFormatException(path, $"no {root}data.pkl in the archive");
        var value = RestrictedUnpickler.Read(Bytes(pickle, path), $"{path}: data.pkl");
        var storages = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var made = new List<Tensor>();
        try
        {
            return Materialize(value, 0);
        }
        catch
        {
            foreach (var t in made)
                t.Dispose();
            throw;
        }
        finally
        {
            foreach (var s in storages.Values)
                s.Dispose();
        }

        object? Materialize(object? v, int depth)
        {
            if (depth > MaxDepth)
                throw new CheckpointFormatException(path, $"containers nested deeper than {MaxDepth} (or a container holding itself)");
            switch (v)
            {
                case RestrictedUnpickler.TensorRecord t:
                {
                    var storage = Storage(t.Storage);
                    using var view = storage.as_strided(t.Size, t.Stride, t.Offset);
                    var tensor = view.contiguous().clone();
                    made.Add(tensor);
                    return tensor;
                }
                case Dictionary<object, object?> d:
                {
                    var result = new Dictionary<object, object?>(d.Count);
                    foreach (var (k, x) in d)
                        result[k] = Materialize(x, depth + 1);
                    return result;
                }
                case List<object?> l:
                    return l.Select(x => Materialize(x, depth + 1)).ToList();
                case object?[] tuple:
                    return tuple.Select(x => Materialize(x, depth + 1)).ToArray();
                default:
                    return v;
            }
        }

        Tensor Storage(RestrictedUnpickler.StorageRef s)
        {
            if (storages.TryGetValue(s.Key, out var cached))
            {
                if (cached.dtype != s.Type.DType || cached.shape[0] != s.Numel)
                    throw new CheckpointFormatException(path, $"storage {s.Key} is named with two different types or sizes");
                return cached;
            }

            var entry = archive.GetEntry($"{root}data/{s.Key}") ?? throw new CheckpointFormatException(path, $"no {root}data/{s.Key} for a stored tensor");
            long expected = s.Numel * s.Type.ElementSize;
            if (entry.Length != expected)
                throw new CheckpointFormatException(path, $"{root}data/{s.Key} holds {entry.Length} bytes, but its storage is {s.Numel} × {s.Type.ElementSize} = {expected}");
            var bytes = Bytes(entry, path);
            var tensor = empty(new[] { s.Numel }, s.Type.DType);
            bytes.CopyTo(tensor.bytes);
            storages[s.Key] = tensor;
            return tensor;
        }
    }

    /// <summary>The tensors of a state dict: the top-level dict, or the dict under <c>model_state_dict</c> when there
    /// is one (how the LoLCATs trainer saves). Every value must be a tensor.</summary>
    public static Dictionary<string, Tensor> LoadStateDict(string path)
    {
        var value = Load(path);
        try
        {
            if (value is not Dictionary<object, object?> top)
                throw new CheckpointFormatException(path, "holds no dict of tensors");
            var dict = top.TryGetValue("model_state_dict", out var inner) ? inner as Dictionary<object, object?>
                       ?? throw new CheckpointFormatException(path, "'model_state_dict' is not a dict") : top;
            var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (k, v) in dict)
            {
                if (k is not string name || v is not Tensor t)
                    throw new CheckpointFormatException(path, $"state dict entry '{k}' is not a named tensor");
                result[name] = t;
            }

            return result;
        }
        catch
        {
            DisposeAll(value);
            throw;
        }
    }

    /// <summary>Disposes every tensor inside a value <see cref="Load"/> returned.</summary>
    public static void DisposeAll(object? value)
    {
        switch (value)
        {
            case Tensor t: t.Dispose(); break;
            case Dictionary<object, object?> d: foreach (var v in d.Values) DisposeAll(v); break;
            case List<object?> l: foreach (var v in l) DisposeAll(v); break;
            case object?[] a: foreach (var v in a) DisposeAll(v); break;
        }
    }

    private static ZipArchive Open(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        var stream = File.OpenRead(path);
        try
        {
            Span<byte> magic = stackalloc byte[2];
            int n = stream.Read(magic);
            if (n == 2 && magic[0] == 0x80)
                throw new CheckpointFormatException(path, "the legacy torch.save format (before PyTorch 1.6) is not read; re-save it with a current torch.save");
            if (n < 2 || magic[0] != (byte)'P' || magic[1] != (byte)'K')
                throw new CheckpointFormatException(path, "not a torch.save file (no zip archive)");
            stream.Position = 0;
            return new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or NotSupportedException)
        {
            stream.Dispose();
            throw new CheckpointFormatException(path, $"not a readable zip archive ({e.Message})");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The archive's root folder (torch names it after the file; every entry lies under it).</summary>
    private static string Root(ZipArchive archive, string path)
    {
        try
        {
            var pkl = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.IndexOf('/') == e.FullName.Length - "/data.pkl".Length)
                      ?? throw new CheckpointFormatException(path, "no <root>/data.pkl in the archive");
            return pkl.FullName[..^"data.pkl".Length];
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointFormatException(path, $"a corrupt zip directory ({e.Message})");
        }
    }

    private static byte[] Bytes(ZipArchiveEntry entry, string path)
    {
        long fileLength = new FileInfo(path).Length;
        // A stored entry cannot be longer than the file; compressed ones are allowed a generous ratio, never a lie
        // that would make us allocate gigabytes.
        if (entry.Length < 0 || entry.Length > Math.Max(fileLength * 16, 1 << 20) || entry.Length > Array.MaxLength)
            throw new CheckpointFormatException(path, $"{entry.FullName} declares {entry.Length} bytes in a file of {fileLength}");
        var buffer = new byte[entry.Length];
        try
        {
            using var s = entry.Open();
            s.ReadExactly(buffer);
            if (s.ReadByte() != -1)
                throw new CheckpointFormatException(path, $"{entry.FullName} is longer than it declares");
        }
        catch (Exception e) when (e is InvalidDataException or IOException or EndOfStreamException or NotSupportedException)
        {
            throw new CheckpointFormatException(path, $"{entry.FullName} cannot be read ({e.Message})");
        }

        return buffer;
    }

    private static string Text(ZipArchiveEntry entry, string path) => System.Text.Encoding.ASCII.GetString(Bytes(entry, path));
}
