using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>
/// A 64-byte-aligned native float32 array (zeroed), outside the GC heap so kernels take raw pointers to it. Either
/// allocated and cleared at once, or (<see cref="TryReserve"/>) address space that the OS backs page by page as it is
/// first written: a buffer that may grow to a known bound is reserved at that bound once, and growing never copies.
/// </summary>
internal sealed unsafe class FloatBuffer : IDisposable
{
    private bool _mapped; // Pointer came from mmap (TryReserve): freed by munmap

    public FloatBuffer(long length)
    {
        Length = Math.Max(0, length);
        Pointer = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, Length) * sizeof(float)), 64);
        NativeMemory.Clear(Pointer, (nuint)(Math.Max(1, Length) * sizeof(float)));
    }

    private FloatBuffer(float* mapped, long length)
    {
        Pointer = mapped;
        Length = length;
        _mapped = true;
    }

    /// <summary>
    /// <paramref name="length"/> floats of address space, zero-filled by the OS on first touch; only written pages take
    /// memory (Linux <c>mmap</c> with <c>MAP_NORESERVE</c>). Null where that is unavailable (another OS, or strict
    /// overcommit refusing the reservation): the caller allocates as it would have.
    /// </summary>
    public static FloatBuffer? TryReserve(long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
            return null;
        try
        {
            nint p = LinuxMemory.Mmap(0, (nuint)(length * sizeof(float)), LinuxMemory.ProtRead | LinuxMemory.ProtWrite,
                LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous | LinuxMemory.MapNoReserve, -1, 0);
            return p == LinuxMemory.MapFailed ? null : new FloatBuffer((float*)p, length);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    public float* Pointer { get; private set; }

    /// <summary>Whether this is a reservation (<see cref="TryReserve"/>), whose pages are backed as they are first written.</summary>
    public bool IsReserved => _mapped;

    /// <summary>
    /// Backs floats <c>[offset, offset + count)</c> of a reservation with memory now, in one call (<c>MADV_POPULATE_WRITE</c>)
    /// rather than one page fault per 4 KiB as they are written. Advice only: where the kernel refuses it, nothing
    /// changes but when the pages are backed.
    /// </summary>
    /// <returns>Whether the kernel backed the range.</returns>
    public bool Populate(long offset, long count)
    {
        if (!_mapped || count <= 0)
            return false;
        const long page = 4096;
        long start = (long)(Pointer + offset) & ~(page - 1), end = (long)(Pointer + offset + count);
        try
        {
            return LinuxMemory.Madvise((nint)start, (nuint)(end - start), LinuxMemory.MadvPopulateWrite) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Whether this machine backs reservations on request (<see cref="Populate"/>): Linux 5.14 or later.</summary>
    public static bool CanPopulate { get; } = Probe();

    private static bool Probe()
    {
        using var probe = TryReserve(1024);
        return probe is not null && probe.Populate(0, 1024);
    }

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
        Free();
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
        if (Pointer != null && _mapped)
            LinuxMemory.Munmap((nint)Pointer, (nuint)(Length * sizeof(float)));
        else if (Pointer != null)
            NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        Length = 0;
        _mapped = false;
    }
}
