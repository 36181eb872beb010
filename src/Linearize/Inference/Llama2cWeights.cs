using System.IO.MemoryMappedFiles;
using Linearize.Checkpoints;

namespace Linearize.Inference;

/// <summary>
/// The weights of a llama2.c <c>.bin</c> read straight from the memory-mapped file under Hugging Face names
/// (<see cref="Llama2cLayout"/>), so the engine loads it as it loads a safetensors directory: no TorchSharp model, no
/// second copy. Every tensor is float32; the float32 matrices are used in place except q and k, whose rows are stored
/// in llama2.c's interleaved-RoPE order and are permuted as they are read (packed, not mapped).
/// </summary>
internal sealed unsafe class Llama2cWeights : IWeightSource, IDisposable
{
    private readonly Llama2cLayout _layout;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;

    public Llama2cWeights(string path)
    {
        _layout = Llama2cCheckpoint.ReadLayout(path);
        Source = path;
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
        _base += _view.PointerOffset;
    }

    public Llama2cLayout Layout => _layout;

    public string Source { get; }

    public IEnumerable<string> Names => _layout.Names;

    public bool Contains(string name) => _layout.Contains(name);

    public long[] Shape(string name) => _layout.Locate(name).Shape;

    public float[] ReadFloats(string name)
    {
        var result = new float[Shape(name).Aggregate(1L, (a, b) => a * b)];
        ReadInto(name, 0, result);
        return result;
    }

    public void ReadInto(string name, long offset, Span<float> destination)
    {
        var (start, shape) = _layout.Locate(name);
        var data = (float*)(_base + start);
        if (!_layout.IsPermuted(name))
        {
            new ReadOnlySpan<float>(data + offset, destination.Length).CopyTo(destination);
            return;
        }

        // Row by row from the stored row that holds each HF row.
        long cols = shape[1];
        for (long i = 0; i < destination.Length;)
        {
            long at = offset + i, row = at / cols, col = at % cols, n = Math.Min(cols - col, destination.Length - i);
            new ReadOnlySpan<float>(data + _layout.SourceRow(name, row) * cols + col, (int)n).CopyTo(destination.Slice((int)i, (int)n));
            i += n;
        }
    }

    public bool HasBFloat16(string name) => false;

    public void ReadBFloat16Into(string name, long offset, Span<ushort> destination) =>
        throw new InvalidOperationException($"{Source}: {name} is float32 (a llama2.c file holds no bfloat16)");

    public void* MapInPlace(string name, WeightFormat format) =>
        format == WeightFormat.Float32 && _layout.Locate(name).Shape.Length == 2 && !_layout.IsPermuted(name)
            ? _base + _layout.Locate(name).Offset
            : null;

    public void Dispose()
    {
        if (_base == null)
            return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view.Dispose();
        _map.Dispose();
    }
}
