using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>
/// The libc memory calls the engine makes on Linux, declared once: anonymous mappings for a KV cache's reservation
/// (<see cref="FloatBuffer.TryReserve"/>) and for executable kernel pages, <c>mprotect</c> to seal those, and
/// <c>madvise</c> for huge pages under the packed weights. Flag values are Linux's on x86-64 and arm64.
/// </summary>
internal static partial class LinuxMemory
{
    public const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    public const int MapPrivate = 0x02, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    public const int MadvHugepage = 14;

    /// <summary><c>MADV_POPULATE_WRITE</c> (Linux 5.14): back a range with writable pages in one call instead of one
    /// fault per page; older kernels refuse it with <c>EINVAL</c>, and the pages then fault in as they are written.</summary>
    public const int MadvPopulateWrite = 23;

    /// <summary>What <see cref="Mmap"/> returns on failure.</summary>
    public const nint MapFailed = -1;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint address, nuint length, int advice);
}
