using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// A read-only, memory-mapped safetensors file. The header is parsed and fully validated on open
/// (8-byte length within the file, JSON object, known dtypes, offsets in bounds and not overlapping,
/// byte count = element size × shape); tensor data is copied straight from the mapping into a new tensor,
/// so a large file is never read into one managed byte array.
/// </summary>
/// <remarks>Format: https://github.com/huggingface/safetensors (8-byte little-endian header length, UTF-8 JSON
/// header <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}</c>, then the data).</remarks>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The safetensors reference implementation refuses headers above 100 MB.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;
    private readonly Lock _wholeLock = new();
    private MemoryMappedViewAccessor? _whole;
    private unsafe byte* _wholeBase;
    private bool _disposed;

    private SafetensorsFile(string path, long dataStart, Dictionary<string, SafetensorsTensorInfo> tensors,
        IReadOnlyDictionary<string, string> metadata, MemoryMappedFile? map)
    {
        FilePath = path;
        DataStart = dataStart;
        _tensors = tensors;
        Metadata = metadata;
        _map = map;
    }

    public string FilePath { get; }

    /// <summary>Offset of the data section in the file (8 + header length).</summary>
    public long DataStart { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    public IReadOnlyCollection<string> Names => _tensors.Keys;

    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors => _tensors;

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public SafetensorsTensorInfo GetInfo(string name) =>
        _tensors.TryGetValue(name, out var info)
            ? info
            : throw new CheckpointFormatException(FilePath, name, "not present in this file");

    /// <summary>Opens and validates <paramref name="path"/>. Throws <see cref="CheckpointFormatException"/> naming the problem.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8)
            throw new CheckpointFormatException(path, $"truncated: {fileLength} bytes, but a safetensors file starts with an 8-byte header length");

        byte[] headerBytes;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)(fileLength - 8))
                throw new CheckpointFormatException(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes)");
            if (headerLength > MaxHeaderBytes)
                throw new CheckpointFormatException(path, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            headerBytes = new byte[headerLength];
            stream.ReadExactly(headerBytes);
        }

        long dataStart = 8 + headerBytes.LongLength;
        long dataLength = fileLength - dataStart;
        var (tensors, metadata) = ParseHeader(path, headerBytes, dataLength);
        MemoryMappedFile? map = fileLength > 0 && dataLength > 0
            ? MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read)
            : null;
        return new SafetensorsFile(path, dataStart, tensors, metadata, map);
    }

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(
        string path, byte[] headerBytes, long dataLength)
    {
        JsonDocument doc;
        try
        {
            // The format requires UTF-8; System.Text.Json checks it only when a string is read, and then throws an
            // InvalidOperationException from deep inside (found by ReaderFuzzTests).
            new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(headerBytes);
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw new CheckpointFormatException(path, "header is not valid UTF-8");
        }

        try
        {
            doc = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"header is not valid JSON ({JsonErrorText.Describe(e)})");
        }

        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, "header is not a JSON object");

        var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new CheckpointFormatException(path, "__metadata__ is not a JSON object");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                continue;
            }

            tensors[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
        }

        // Offsets must not overlap: sort by start and check each begins at or after the previous end.
        SafetensorsTensorInfo? previous = null;
        foreach (var info in tensors.Values.Where(t => t.ByteCount > 0).OrderBy(t => t.Begin))
        {
            if (previous is not null && info.Begin < previous.End)
                throw new CheckpointFormatException(path, info.Name,
                    $"data_offsets [{info.Begin}, {info.End}] overlap tensor '{previous.Name}' [{previous.Begin}, {previous.End}]");
            previous = info;
        }

        return (tensors, metadata);
    }

    private static SafetensorsTensorInfo ParseEntry(string path, string name, JsonElement entry, long dataLength)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, name, "header entry is not a JSON object");
        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new CheckpointFormatException(path, name, "missing 'dtype'");
        string dtypeName = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
            throw new CheckpointFormatException(path, name,
                $"unsupported dtype '{dtypeName}' (supported: {string.Join(", ", Enum.GetNames<SafetensorsDType>())})");

        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException(path, name, "missing 'shape'");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new CheckpointFormatException(path, name, $"shape {shapeElement.GetRawText()} is not a list of non-negative integers");
            shape[i++] = dim;
        }

        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array ||
            offsets.GetArrayLength() != 2 || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw new CheckpointFormatException(path, name, "missing or malformed 'data_offsets' (expected [begin, end])");
        if (begin < 0 || end < begin)
            throw new CheckpointFormatException(path, name, $"data_offsets [{begin}, {end}] are not an increasing pair of non-negative offsets");
        if (end > dataLength)
            throw new CheckpointFormatException(path, name, $"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes); the file may be truncated");

        var info = new SafetensorsTensorInfo(name, dtype, shape, begin, end);
        long expected;
        try
        {
            expected = checked(info.ElementCount * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw new CheckpointFormatException(path, name, $"shape [{string.Join(", ", shape)}] is too large");
        }

        if (expected != info.ByteCount)
            throw new CheckpointFormatException(path, name,
                $"byte count {info.ByteCount} does not match dtype {dtype} × shape [{string.Join(", ", shape)}] = {expected} bytes");
        return info;
    }

    /// <summary>Reads tensor <paramref name="name"/> into a new CPU tensor of its stored dtype.</summary>
    public Tensor Read(string name)
    {
        var info = GetInfo(name);
        var tensor = torch.empty(info.Shape, info.DType.ToScalarType());
        CopyInto(info, tensor);
        return tensor;
    }

    /// <summary>Copies elements <c>[offset, offset + destination.Length)</c> of a BF16 tensor's bit patterns into
    /// <paramref name="destination"/>; false (nothing read) when the tensor is stored as another type.</summary>
    public unsafe bool TryReadBFloat16Into(string name, long offset, Span<ushort> destination)
    {
        var info = GetInfo(name);
        if (info.DType != SafetensorsDType.BF16)
            return false;
        if (offset < 0 || offset + destination.Length > info.ElementCount)
            throw new ArgumentException($"{FilePath}: {name} has {info.ElementCount} elements, asked for [{offset}, {offset + destination.Length})");
        if (destination.IsEmpty)
            return true;
        using var view = _map!.CreateViewAccessor(DataStart + info.Begin + offset * 2, destination.Length * 2L, MemoryMappedFileAccess.Read);
        byte* basePtr = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            new ReadOnlySpan<ushort>(basePtr + view.PointerOffset, destination.Length).CopyTo(destination);
            return true;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>Reads elements <c>[offset, offset + destination.Length)</c> of floating-point tensor
    /// <paramref name="name"/> (F32, BF16 or F16, row-major) as float32 values straight from the mapped file into
    /// <paramref name="destination"/> — no tensor in between, so packing a large checkpoint a block of rows at a time
    /// holds only that block. BF16 and F16 widen exactly.</summary>
    public unsafe void ReadInto(string name, long offset, Span<float> destination)
    {
        var info = GetInfo(name);
        if (offset < 0 || offset + destination.Length > info.ElementCount)
            throw new ArgumentException($"{FilePath}: {name} has {info.ElementCount} elements, asked for [{offset}, {offset + destination.Length})");
        if (destination.IsEmpty)
            return;
        long elementSize = info.DType.ElementSize();
        using var view = _map!.CreateViewAccessor(DataStart + info.Begin + offset * elementSize, destination.Length * elementSize,
            MemoryMappedFileAccess.Read);
        byte* basePtr = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            byte* src = basePtr + view.PointerOffset;
            switch (info.DType)
            {
                case SafetensorsDType.F32:
                    new ReadOnlySpan<float>(src, destination.Length).CopyTo(destination);
                    break;
                case SafetensorsDType.BF16:
                    BFloat16Bits.Widen(new ReadOnlySpan<ushort>(src, destination.Length), destination);
                    break;
                case SafetensorsDType.F16:
                {
                    var halves = new ReadOnlySpan<Half>(src, destination.Length);
                    for (int i = 0; i < halves.Length; i++)
                        destination[i] = (float)halves[i];
                    break;
                }
                default:
                    throw new CheckpointFormatException(FilePath, name, $"is {info.DType}, not a floating-point type the engine reads");
            }
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>Copies the bytes of <paramref name="info"/> into the contiguous CPU tensor <paramref name="destination"/>.</summary>
    private unsafe void CopyInto(SafetensorsTensorInfo info, Tensor destination)
    {
        if (info.ByteCount == 0)
            return;
        using var view = _map!.CreateViewAccessor(DataStart + info.Begin, info.ByteCount, MemoryMappedFileAccess.Read);
        byte* basePtr = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            byte* src = basePtr + view.PointerOffset;
            const long chunkBytes = 1L << 28; // spans are int-indexed: copy tensors above 2 GB in 256 MB pieces
            if (info.ByteCount <= int.MaxValue)
            {
                new ReadOnlySpan<byte>(src, (int)info.ByteCount).CopyTo(destination.bytes);
                return;
            }

            using var flat = destination.view(-1);
            long elementSize = info.DType.ElementSize();
            long chunkElements = chunkBytes / elementSize;
            for (long start = 0; start < info.ElementCount; start += chunkElements)
            {
                long n = Math.Min(chunkElements, info.ElementCount - start);
                using var chunk = torch.empty(new[] { n }, destination.dtype);
                new ReadOnlySpan<byte>(src + start * elementSize, (int)(n * elementSize)).CopyTo(chunk.bytes);
                using var slice = flat.narrow(0, start, n);
                slice.copy_(chunk);
            }
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>
    /// The address of tensor <paramref name="name"/>'s first byte in a read-only view of the whole file, valid until this
    /// file is disposed: for readers that use the stored bytes in place (the engine's bfloat16/float32 weight rows) rather
    /// than copy them. The view is created on first use; its pages are the page cache's, shared with every other reader of
    /// the file and read from disk only when touched.
    /// </summary>
    public unsafe byte* MapInPlace(string name)
    {
        var info = GetInfo(name);
        if (info.ByteCount == 0)
            throw new ArgumentException($"{FilePath}: {name} is empty and has no address");
        lock (_wholeLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_whole is null)
            {
                var view = _map!.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                byte* p = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _wholeBase = p + view.PointerOffset;
                _whole = view;
            }

            return _wholeBase + DataStart + info.Begin;
        }
    }

    public unsafe void Dispose()
    {
        lock (_wholeLock)
        {
            if (_disposed)
                return;
            _disposed = true;
            if (_whole is not null)
            {
                _whole.SafeMemoryMappedViewHandle.ReleasePointer();
                _whole.Dispose();
                _whole = null;
                _wholeBase = null;
            }
        }

        _map?.Dispose();
    }

    internal static string DescribeShape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    internal static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
