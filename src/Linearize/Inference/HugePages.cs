using System.Runtime.InteropServices;

namespace Linearize.Inference;

/// <summary>
/// Allocation for the packed weights: a decoding step streams hundreds of MB, and with 4 KiB pages every 4 KiB read
/// is a TLB miss. Large buffers are 2 MiB-aligned and advised <c>MADV_HUGEPAGE</c>, so Linux backs them with huge pages
/// when transparent huge pages are in <c>madvise</c> (or <c>always</c>) mode; elsewhere the advice is skipped.
/// </summary>
internal static unsafe class HugePages
{
    private const long HugePage = 2 << 20;

    public static void* Allocate(long bytes)
    {
        bool huge = bytes >= 2 * HugePage && OperatingSystem.IsLinux();
        long size = huge ? (bytes + HugePage - 1) / HugePage * HugePage : Math.Max(1, bytes);
        void* p = NativeMemory.AlignedAlloc((nuint)size, huge ? (nuint)HugePage : 64);
        if (huge)
        {
            try
            {
                LinuxMemory.Madvise((nint)p, (nuint)size, LinuxMemory.MadvHugepage); // advice only: failure changes nothing but speed
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
            }
        }

        return p;
    }

    public static void Free(void* p) => NativeMemory.AlignedFree(p);
}
