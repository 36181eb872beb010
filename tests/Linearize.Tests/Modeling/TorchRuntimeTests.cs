using System.Text;
using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;

namespace Linearize.Tests.Modeling;

/// <summary>The native runtime loads (the build's GLIBCXX_3.4.32 patch works where it is needed).</summary>
[Collection("Torch")]
public sealed class TorchRuntimeTests
{
    [Fact]
    public void TorchSharpInitialisesAndComputes()
    {
        Assert.StartsWith("2.10", torch.__version__);
        using var a = TorchArithmetic.Arange(6, torch.ScalarType.Float32).view(2, 3);

        using var p = a.matmul(a.T);
        Assert.Equal(new[] { 5f, 14f, 14f, 50f }, p.data<float>().ToArray());
    }

    [Fact]
    public void NativeLibraryRequirementIsWeakExactlyWhenTheSystemLacksIt()
    {
        string lib = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        Assert.True(File.Exists(lib), $"{lib} not found next to the test assembly");
        var flags = VersionRequirementFlags(File.ReadAllBytes(lib), "GLIBCXX_3.4.32");
        Assert.NotNull(flags); // the library does ask for the version
        string? system = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }
            .FirstOrDefault(File.Exists);
        if (system is null)
            return;
        bool systemHasIt = Encoding.ASCII.GetString(File.ReadAllBytes(system)).Contains("GLIBCXX_3.4.32\0");
        Assert.Equal(!systemHasIt, (flags!.Value & 0x2) != 0);
    }

    /// <summary>vna_flags of the Elf64_Vernaux entry named <paramref name="version"/> in .gnu.version_r, or null.</summary>
    private static ushort? VersionRequirementFlags(byte[] b, string version)
    {
        long shoff = BitConverter.ToInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A), shnum = BitConverter.ToUInt16(b, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)(shoff + (long)i * shentsize);
            if (BitConverter.ToUInt32(b, sh + 4) != 0x6ffffffe)
                continue;
            long off = BitConverter.ToInt64(b, sh + 0x18);
            uint link = BitConverter.ToUInt32(b, sh + 0x28), count = BitConverter.ToUInt32(b, sh + 0x2C);
            long strOff = BitConverter.ToInt64(b, (int)(shoff + link * shentsize) + 0x18);
            long vn = off;
            for (uint n = 0; n < count; n++)
            {
                long aux = vn + BitConverter.ToUInt32(b, (int)vn + 8);
                for (int a = 0; a < BitConverter.ToUInt16(b, (int)vn + 2); a++)
                {
                    int s = (int)(strOff + BitConverter.ToUInt32(b, (int)aux + 8));
                    int e = Array.IndexOf(b, (byte)0, s);
                    if (Encoding.ASCII.GetString(b, s, e - s) == version)
                        return BitConverter.ToUInt16(b, (int)aux + 4);
                    aux += BitConverter.ToUInt32(b, (int)aux + 12);
                }

                vn += BitConverter.ToUInt32(b, (int)vn + 12);
            }
        }

        return null;
    }
}
