using System.Runtime.InteropServices;
using Linearize.Inference;
using Linearize.Inference.Threading;
using Linearize.Methods;
using Linearize.Tests.Fixtures;
using Linearize.Workflows.Benchmarks;

namespace Linearize.Tests.Inference;

/// <summary>
/// The floor <c>bench decode</c> measures on the model's own pages: the read covers every byte of every matrix a step
/// multiplies (the step's bytes but for one embedding row and the norms), in any weight format and with stacked
/// matrices, and sums what it reads exactly as a plain loop does — so it cannot skip a piece and still pass.
/// </summary>
[Collection("Torch")]
public sealed unsafe class WeightReadTests
{
    /// <summary>Spans of odd lengths at odd addresses (shorter than one 256-byte load group, a few pieces long, a
    /// partial last word), read by two threads, give the plain little-endian word sum.</summary>
    [Fact]
    public void TheReadSumsEveryByteOfEverySpan()
    {
        const int size = 700_001;
        byte* buffer = (byte*)NativeMemory.Alloc(size);
        try
        {
            var random = new Random(3);
            for (int i = 0; i < size; i++)
                buffer[i] = (byte)random.Next(256);
            var spans = new (nint Start, long Bytes)[] { ((nint)buffer + 1, 5), ((nint)buffer + 13, 255), ((nint)buffer + 301, 600_003), ((nint)buffer + 600_400, 99_601) };
            var job = new SpanReadJob(spans);
            using (var pool = new WorkerPool(2))
                pool.Run(job, job.Count);

            ulong expected = 0;
            foreach (var (start, bytes) in spans)
                for (long at = 0; at < bytes; at += 8)
                {
                    ulong word = 0;
                    for (int k = 0; k < 8 && at + k < bytes; k++)
                        word |= (ulong)((byte*)start)[at + k] << (8 * k);
                    expected += word;
                }

            Assert.Equal(spans.Sum(s => s.Bytes), job.Bytes);
            Assert.True(job.Count > 4, $"{job.Count} pieces: the long span should be cut into several");
            Assert.Equal(expected, job.Checksum);
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }

    [Theory]
    [InlineData(WeightFormat.Float32, "teacher")]
    [InlineData(WeightFormat.BFloat16, "liger-gla")]
    [InlineData(WeightFormat.Q8, "teacher")]
    public void TheEngineReadsTheMatricesAStepMultiplies(WeightFormat format, string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LinearAttention.LigerConversionTests.Lin(method));
        using var engine = Engines.Create(model, new EngineOptions { Weights = format, Threads = 2 });
        var c = model.Config;
        long row = format switch
        {
            WeightFormat.Float32 => 4L * c.HiddenSize,
            WeightFormat.BFloat16 => 2L * c.HiddenSize,
            _ => c.HiddenSize + 4L * ((c.HiddenSize + 31) / 32),
        };
        long norms = (2L * c.NumHiddenLayers + 1) * c.HiddenSize * sizeof(float);
        Assert.Equal(engine.WeightBytesPerStep, engine.WeightReader.Bytes + row + norms);
        Assert.True(engine.TimeWeightRead() > 0);
    }

    /// <summary>The benchmark reports the floor beside the paired steps when asked, and not otherwise.</summary>
    [Fact]
    public void TheBenchmarkPairsStepsWithReads()
    {
        using var dir = TinyModels.TempDirectory();
        var source = TinyModels.SavedSource(dir);
        var options = new DecodeBenchmarkOptions { Contexts = new[] { 8, 20 }, Steps = 3, Engine = new EngineOptions { Threads = 2 }, SyntheticFill = true };
        var plain = DecodeBenchmark.Run(new[] { ("m", source) }, options).Single();
        Assert.All(plain.Rows, r => Assert.Null(r.FloorMs));
        var floored = DecodeBenchmark.Run(new[] { ("m", source) }, options with { ReadFloor = true }).Single();
        Assert.All(floored.Rows, r => Assert.True(r.FloorMs > 0 && r.PairedMs > 0, $"floor {r.FloorMs}, paired {r.PairedMs}"));
    }
}
