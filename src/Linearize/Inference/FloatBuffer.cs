using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>A 64-byte-aligned native float32 array (zeroed), outside the GC heap so kernels take raw pointers to it.</summary>
internal sealed unsafe class FloatBuffer : IDisposable
{
    public FloatBuffer(long length)
    {
        Length = Math.Max(0, length);
        Pointer = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, Length) * sizeof(float)), 64);
        NativeMemory.Clear(Pointer, (nuint)(Math.Max(1, Length) * sizeof(float)));
    }

    public float* Pointer { get; private set; }

    public long Length { get; private set; }

    public long Bytes => Length * sizeof(float);

    public Span<float> AsSpan(long offset, int length)
    {
        if (offset < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset));
        return new Span<float>(Pointer + offset, length);
    }

    /// <summary>Ensures room for <paramref name="length"/> floats; existing contents are kept, new space is zeroed.</summary>
    public void EnsureLength(long length)
    {
        if (length <= Length)
            return;
        var fresh = (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
        NativeMemory.Clear(fresh, (nuint)(length * sizeof(float)));
        Buffer.MemoryCopy(Pointer, fresh, length * sizeof(float), Length * sizeof(float));
        NativeMemory.AlignedFree(Pointer);
        Pointer = fresh;
        Length = length;
    }

    public FloatBuffer Clone()
    {
        var copy = new FloatBuffer(Length);
        Buffer.MemoryCopy(Pointer, copy.Pointer, Length * sizeof(float), Length * sizeof(float));
        return copy;
    }

    ~FloatBuffer() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (Pointer != null)
            NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        Length = 0;
    }
}
