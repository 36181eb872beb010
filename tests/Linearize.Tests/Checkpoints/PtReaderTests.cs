using System.IO.Compression;
using Linearize.Checkpoints.Authors;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Checkpoints;

/// <summary>
/// The restricted <c>torch.save</c> reader on fixtures written in PyTorch's exact zip layout by
/// <c>Fixtures/pt/make_pt_fixtures.py</c> (standard library only): tensors and plain containers load, pickled calls
/// are refused with one line naming the file, and mutated files load or are refused — never anything else.
/// </summary>
[Collection("Torch")]
public sealed class PtReaderTests
{
    public static string FixtureDir => Path.GetFullPath(Path.Combine(SampleData.Root, "..", "tests", "Linearize.Tests", "Fixtures", "pt"));

    private static string Fixture(string name) => Path.Combine(FixtureDir, name);

    [Fact]
    public void ReadsTensorsAndPlainContainersOfTheTorchSaveLayout()
    {
        var value = PtReader.Load(Fixture("plain.pt"));
        try
        {
            var top = Assert.IsType<Dictionary<object, object?>>(value);
            Assert.Equal(7L, top["step"]);
            Assert.Equal(1.25, top["eval/loss"]);
            var plain = Assert.IsType<List<object?>>(top["plain"]);
            Assert.Equal(new object?[] { true, false, null, "text", -3L, 1L << 40 }, plain.Take(6));
            Assert.Equal(new object?[] { 1L, 2.5 }, Assert.IsType<object?[]>(plain[6]));

            var state = Assert.IsType<Dictionary<object, object?>>(top["model_state_dict"]);
            Assert.Equal(new[] { "layers.0.weight", "layers.0.transposed", "layers.0.tail", "layers.1.bf16", "layers.1.long", "scalar" },
                state.Keys.Cast<string>());
            using var expected = tensor(Enumerable.Range(0, 12).Select(i => (float)i).ToArray()).reshape(3, 4);
            TensorAssert.BitEqual("weight", expected, (Tensor)state["layers.0.weight"]!);
            using var transposed = expected.t();
            TensorAssert.BitEqual("transposed", transposed.contiguous(), (Tensor)state["layers.0.transposed"]!);
            using var tail = tensor(new[] { 8f, 9f, 10f, 11f });
            TensorAssert.BitEqual("offset view", tail, (Tensor)state["layers.0.tail"]!);
            var bf16 = (Tensor)state["layers.1.bf16"]!;
            Assert.Equal(ScalarType.BFloat16, bf16.dtype);
            Assert.Equal(new[] { 0.5f, -1f, 2f, 3.5f }, bf16.to(ScalarType.Float32).data<float>().ToArray());
            var longs = (Tensor)state["layers.1.long"]!;
            Assert.Equal(ScalarType.Int64, longs.dtype);
            Assert.Equal(new long[] { 2, 2 }, longs.shape);
            Assert.Equal(new long[] { 1, 2, 3, 4 }, longs.data<long>().ToArray());
            var scalar = (Tensor)state["scalar"]!;
            Assert.Empty(scalar.shape);
            Assert.Equal(5f, scalar.item<float>());
        }
        finally
        {
            PtReader.DisposeAll(value);
        }

        var tensors = PtReader.LoadStateDict(Fixture("plain.pt"));
        Assert.Equal(6, tensors.Count);
        foreach (var t in tensors.Values)
            t.Dispose();
    }

    [Theory]
    [InlineData("eval.pt", "__builtin__.eval")] // protocol 2 spells builtins the Python 2 way
    [InlineData("system.pt", "posix.system")]
    public void PickledCallsAreRefusedInOneLineNamingTheFile(string name, string callable)
    {
        string path = Fixture(name);
        var e = Assert.Throws<LinearizeException>(() => PtReader.Load(path));
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(path, e.Message);
        Assert.Contains(callable, e.Message);
        Assert.Contains("refused", e.Message);
    }

    [Fact]
    public void LegacyAndNonZipFilesAreRefused()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("legacy.pt"), new byte[] { 0x80, 0x02, 0x8a, 0x0a });
        Assert.Contains("legacy torch.save format", Assert.Throws<Linearize.Checkpoints.CheckpointFormatException>(() => PtReader.Load(dir.File("legacy.pt"))).Message);
        File.WriteAllText(dir.File("text.pt"), "hello");
        Assert.Contains("not a torch.save file", Assert.Throws<Linearize.Checkpoints.CheckpointFormatException>(() => PtReader.Load(dir.File("text.pt"))).Message);
    }

    /// <summary>The file as a whole: zip directory, CRCs, entry lengths.</summary>
    [Fact]
    public void FileMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        string copy = dir.File("plain.pt");
        File.Copy(Fixture("plain.pt"), copy);
        ReaderFuzzTests.Fuzz(copy, 11, () => PtReader.DisposeAll(PtReader.Load(copy)));
    }

    /// <summary>The pickle itself, re-zipped after each mutation so the archive's checksums do not catch it first.</summary>
    [Fact]
    public void PickleMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        byte[] pickle;
        var entries = new List<(string Name, byte[] Data)>();
        using (var zip = ZipFile.OpenRead(Fixture("plain.pt")))
        {
            foreach (var e in zip.Entries)
            {
                using var s = e.Open();
                using var m = new MemoryStream();
                s.CopyTo(m);
                entries.Add((e.FullName, m.ToArray()));
            }
        }

        pickle = entries.Single(e => e.Name == "archive/data.pkl").Data;
        string path = dir.File("mutated.pt");
        var failures = new List<string>();
        int refused = 0;
        for (int i = 0; i < 1000; i++)
        {
            var mutated = ReaderFuzzTests.Mutate(pickle, new Random(7_000_003 + i));
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
                foreach (var (name, data) in entries)
                {
                    using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                    s.Write(name == "archive/data.pkl" ? mutated : data);
                }

            try
            {
                PtReader.DisposeAll(PtReader.Load(path));
            }
            catch (LinearizeException)
            {
                refused++;
            }
            catch (Exception e)
            {
                failures.Add($"mutation {i}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            }

            File.Delete(path);
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(8)));
        Assert.True(refused > 250, $"only {refused} of 1000 pickle mutations were refused");
    }
}
