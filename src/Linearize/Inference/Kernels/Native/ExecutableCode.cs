using System.Runtime.InteropServices;
using static Linearize.Inference.LinuxMemory;

namespace Linearize.Inference.Kernels.Native;

/// <summary>
/// Machine code copied into pages the process may execute (Linux): mapped read-write with <c>mmap</c>, filled, then
/// switched to read-execute with <c>mprotect</c> — never writable and executable at once — and unmapped on dispose.
/// This is how the engine runs the instructions .NET has no intrinsics for (AVX512-BF16's <c>vdpbf16ps</c>; see
/// <see cref="NativeBFloat16Tiles"/>) without shipping a native library per platform: the bytes are assembled once
/// from checked-in assembly (<c>build/assemble-kernels.sh</c>) and are position independent.
/// </summary>
internal sealed unsafe class ExecutableCode : IDisposable
{
    private byte* _start;
    private readonly nuint _length;

    /// <summary>Copies <paramref name="code"/> into fresh executable pages; throws when the system refuses them (the
    /// caller falls back to managed code).</summary>
    public ExecutableCode(ReadOnlySpan<byte> code)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("executable code pages are mapped with Linux's mmap");
        _length = (nuint)Math.Max(1, code.Length);
        nint p = Mmap(0, _length, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (p == -1)
            throw new InvalidOperationException($"mmap of {_length} bytes failed (errno {Marshal.GetLastPInvokeError()})");
        code.CopyTo(new Span<byte>((void*)p, code.Length));
        if (Mprotect(p, _length, ProtRead | ProtExec) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            Munmap(p, _length);
            throw new InvalidOperationException($"mprotect to read-execute failed (errno {errno})");
        }

        _start = (byte*)p;
    }

    /// <summary>
    /// <paramref name="code"/> in executable pages when this process can run it — Linux x64 and
    /// <paramref name="cpuSupports"/> (the CPU has the extension the code uses) — or null, and the caller runs managed
    /// code instead. The pages live as long as the process: kernels are called from any thread.
    /// </summary>
    public static ExecutableCode? TryLoad(ReadOnlySpan<byte> code, bool cpuSupports)
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64 || !cpuSupports)
            return null;
        try
        {
            return new ExecutableCode(code);
        }
        catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The address of the byte at <paramref name="offset"/> (a function's entry point).</summary>
    public nint Address(int offset)
    {
        if (_start is null)
            throw new ObjectDisposedException(nameof(ExecutableCode));
        if ((uint)offset >= _length)
            throw new ArgumentOutOfRangeException(nameof(offset));
        return (nint)(_start + offset);
    }

    ~ExecutableCode() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_start is null)
            return;
        Munmap((nint)_start, _length);
        _start = null;
    }
}
