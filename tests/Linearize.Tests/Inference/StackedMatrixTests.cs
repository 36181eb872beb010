using System.Runtime.InteropServices;
using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Inference.Threading;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Inference;

/// <summary>A stacked matrix (parts used in place, as the engine stacks a mapped checkpoint's q|k|v and gate|up) gives
/// every product exactly what the fused packed copy gives, split any way across threads.</summary>
public sealed unsafe class StackedMatrixTests
{
    public static IEnumerable<object[]> Formats() => new[] { new object[] { WeightFormat.Float32 }, new object[] { WeightFormat.BFloat16 } };

    [IsaTheory(KernelIsa.Avx512)]
    [MemberData(nameof(Formats))]
    public void Avx512StackEqualsFused(WeightFormat format) => AssertStackEqualsFused(format, KernelIsa.Avx512);

    [IsaTheory(KernelIsa.Avx2)]
    [MemberData(nameof(Formats))]
    public void Avx2StackEqualsFused(WeightFormat format) => AssertStackEqualsFused(format, KernelIsa.Avx2);

    [IsaTheory(KernelIsa.Scalar)]
    [MemberData(nameof(Formats))]
    public void ScalarStackEqualsFused(WeightFormat format) => AssertStackEqualsFused(format, KernelIsa.Scalar);

    /// <summary>Parts of 6, 10 and 13 rows (even but for the last, the engine's rule), 100 columns (no multiple of a
    /// vector width); 1, 3 and 9 vectors; matrix × vectors and the tiled prefill product; whole and in uneven thread
    /// shares that cross the part boundaries.</summary>
    private static void AssertStackEqualsFused(WeightFormat format, KernelIsa isa)
    {
        int[] partRows = { 6, 10, 13 };
        const int cols = 100;
        int rows = partRows.Sum();
        var random = new Random(11);
        var values = Enumerable.Range(0, rows * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var fused = PackedMatrix.Pack(values, rows, cols, format);

        // The parts' storage as a file would hold it: the packed bytes of each part's rows, in place.
        int elementSize = format == WeightFormat.Float32 ? 4 : 2;
        var storage = new List<nint>();
        try
        {
            var parts = new List<PackedMatrix>();
            int first = 0;
            foreach (int n in partRows)
            {
                nint p = (nint)NativeMemory.Alloc((nuint)(n * cols * elementSize));
                storage.Add(p);
                byte* source = format == WeightFormat.Float32 ? (byte*)fused.F32 : (byte*)fused.Bf16;
                Buffer.MemoryCopy(source + (long)first * cols * elementSize, (void*)p, n * cols * elementSize, n * cols * elementSize);
                parts.Add(PackedMatrix.InPlace(n, cols, format, (void*)p));
                first += n;
            }

            using var stacked = PackedMatrix.Stack(parts.ToArray());
            Assert.Equal(rows, stacked.Rows);
            Assert.Equal(fused.Bytes, stacked.Bytes);
            Assert.Equal(fused.Bytes, stacked.InPlaceBytes);
            var row = new float[cols];
            var expectedRow = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                stacked.DequantizeRow(r, row);
                fused.DequantizeRow(r, expectedRow);
                Assert.Equal(expectedRow, row);
            }

            foreach (int count in new[] { 1, 3, 9 })
                foreach (bool tiled in new[] { false, true })
                {
                    var x = Enumerable.Range(0, count * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                    var expected = Multiply(fused, x, count, isa, tiled, new[] { (0, rows) });
                    Assert.Equal(expected, Multiply(stacked, x, count, isa, tiled, new[] { (0, rows) }));
                    Assert.Equal(expected, Multiply(stacked, x, count, isa, tiled, new[] { (0, 4), (4, 8), (8, 20), (20, rows) }));
                }
        }
        finally
        {
            foreach (var p in storage)
                NativeMemory.Free((void*)p);
        }
    }

    private static float[] Multiply(PackedMatrix w, float[] x, int count, KernelIsa isa, bool tiled, (int Start, int End)[] shares)
    {
        var y = new float[count * w.Rows];
        fixed (float* xp = x, yp = y)
        {
            var job = new MatMulJob
            {
                Matrix = w, X = xp, XStride = w.Cols, Count = count, Y = yp, YStride = w.Rows, Isa = isa, Tiled = tiled,
            };
            foreach (var (start, end) in shares)
                job.Execute(start, end);
        }

        return y;
    }
}
