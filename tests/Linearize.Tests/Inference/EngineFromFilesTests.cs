using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference;

/// <summary>The engine packed straight from a checkpoint's files (no TorchSharp model) is the engine packed from the
/// loaded model: the same logits, bit for bit, over a prefill and steps.</summary>
[Collection("Torch")]
public sealed class EngineFromFilesTests
{
    public static IEnumerable<object[]> Cases() =>
        TinyModels.Variants().Select(v => new object[] { (string)v[0], "teacher" })
            .Concat(LinearizationMethods.Names.Select(m => new object[] { "gqa-untied", m }))
            .Concat(new[] { new object[] { "qwen2-bias", "liger-gdn" }, new object[] { "mha-tied", "lolcats-tk" } });

    [Theory]
    [MemberData(nameof(Cases))]
    public void FilesEqualLoadedModel(string variant, string method) => AssertFilesEqualLoadedModel(variant, method, ScalarType.Float32);

    /// <summary>A bfloat16 checkpoint packed as bfloat16 copies its bits (no widening and rounding back): still the
    /// engine a loaded bfloat16 model packs, bit for bit; and widened to float32 for the other formats.</summary>
    [Theory]
    [InlineData("gqa-untied", "teacher")]
    [InlineData("mha-tied", "liger-gdn")]
    public void BFloat16FilesEqualLoadedModel(string variant, string method) => AssertFilesEqualLoadedModel(variant, method, ScalarType.BFloat16);

    /// <summary>Writes the model (<paramref name="method"/> converted with layer 1 kept softmax, or the teacher) as
    /// <paramref name="dtype"/> files, then compares the engine packed from the files with the one packed from the
    /// loaded model over a prefill and steps, in every weight format.</summary>
    private static void AssertFilesEqualLoadedModel(string variant, string method, ScalarType dtype)
    {
        using var dir = TinyModels.TempDirectory();
        using (var teacher = TinyModels.Create(variant))
        {
            teacher.to(dtype);
            if (method == "teacher")
                ModelLoader.SaveHuggingFace(teacher, teacher.Config, dir.Path + "/m", null);
            else
            {
                var lin = LinearizationMethods.Get(method, "test").Kind == MethodKind.Lolcats
                    ? LolcatsConversionTests.Lin(method, softmaxLayers: new[] { 1 })
                    : LigerConversionTests.Lin(method) with { SoftmaxLayers = new[] { 1 } };
                using var student = Converter.ConvertToDirectory(teacher, lin, dir.Path + "/m", null);
            }
        }

        var source = ModelSource.Resolve(dir.Path + "/m", null);
        using var model = ModelLoader.Load(source, dtype);
        foreach (var weights in new[] { WeightFormat.Float32, WeightFormat.BFloat16, WeightFormat.Q8 })
        {
            var options = new EngineOptions { Weights = weights, Threads = 2 };
            using var packed = Engines.Create(model, options);
            using var mapped = Engines.Load(source, options);
            // Matrices stored in the packed format are used where the file maps them, the others packed.
            bool inPlace = (weights, dtype) is (WeightFormat.Float32, ScalarType.Float32) or (WeightFormat.BFloat16, ScalarType.BFloat16);
            Assert.Equal(0, packed.InPlaceWeightBytes);
            if (inPlace)
                Assert.InRange(mapped.InPlaceWeightBytes, mapped.WeightBytes / 2, mapped.WeightBytes);
            else
                Assert.Equal(0, mapped.InPlaceWeightBytes);
            AssertSameLogits(packed, mapped, model.Config.VocabSize, promptLength: 23, steps: 12);
        }
    }

    /// <summary>A llama2.c <c>.bin</c> mapped (q and k rows permuted as they are read, the other float32 matrices used in
    /// place) is the engine packed from the model the file loads as, bit for bit, in every weight format, tied or not.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Llama2cFileEqualsLoadedModel(bool tied)
    {
        var j = TinyModels.BaseJson(hidden: 32, heads: 4, kvHeads: 2);
        j["tie_word_embeddings"] = tied;
        using var dir = TinyModels.TempDirectory();
        string path = Path.Combine(dir.Path, "tiny.bin");
        using (var teacher = TinyModels.Create(LlamaConfig.FromJson(j, "tiny")))
            Linearize.Interchange.Llama2cWriter.Write(teacher, path);
        var source = ModelSource.Resolve(path, null);
        using var model = ModelLoader.Load(source);
        foreach (var weights in new[] { WeightFormat.Float32, WeightFormat.BFloat16, WeightFormat.Q8 })
        {
            var options = new EngineOptions { Weights = weights, Threads = 2 };
            using var packed = Engines.Create(model, options);
            using var mapped = Engines.Load(source, options);
            if (weights == WeightFormat.Float32)
                Assert.InRange(mapped.InPlaceWeightBytes, 1, mapped.WeightBytes - 1); // all but q and k
            else
                Assert.Equal(0, mapped.InPlaceWeightBytes);
            AssertSameLogits(packed, mapped, model.Config.VocabSize, promptLength: 19, steps: 9);
        }
    }

    /// <summary>The two engines' logits over a prefill of <paramref name="promptLength"/> tokens and
    /// <paramref name="steps"/> steps, bit for bit.</summary>
    private static void AssertSameLogits(DecodeEngine packed, DecodeEngine mapped, int vocab, int promptLength, int steps)
    {
        using var a = packed.CreateSequence();
        using var b = mapped.CreateSequence();
        var prompt = Enumerable.Range(0, promptLength).Select(i => 3 + i * 7 % (vocab - 3)).ToArray();
        Assert.Equal(packed.Prefill(a, prompt).ToArray(), mapped.Prefill(b, prompt).ToArray());
        for (int t = 0; t < steps; t++)
            Assert.Equal(packed.Step(a, 5 + t).ToArray(), mapped.Step(b, 5 + t).ToArray());
    }

    /// <summary>Packing a block of rows at a time (as loading does) gives the bytes packing the whole matrix gives.</summary>
    [Theory]
    [InlineData(WeightFormat.Float32)]
    [InlineData(WeightFormat.BFloat16)]
    [InlineData(WeightFormat.Q8)]
    public unsafe void PackingByBlocksEqualsPackingWhole(WeightFormat format)
    {
        const int rows = 37, cols = 100;
        var random = new Random(3);
        var all = Enumerable.Range(0, rows * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var whole = PackedMatrix.Pack(all, rows, cols, format);
        using var blocks = PackedMatrix.Allocate(rows, cols, format);
        foreach (var (first, n) in new[] { (0, 5), (5, 1), (6, 30), (36, 1) })
            blocks.PackRows(first, all.AsSpan(first * cols, n * cols));
        Assert.Equal(whole.Bytes, blocks.Bytes);
        byte* a = format == WeightFormat.Float32 ? (byte*)whole.F32 : format == WeightFormat.BFloat16 ? (byte*)whole.Bf16 : whole.Q8Row(0);
        byte* b = format == WeightFormat.Float32 ? (byte*)blocks.F32 : format == WeightFormat.BFloat16 ? (byte*)blocks.Bf16 : blocks.Q8Row(0);
        Assert.True(new ReadOnlySpan<byte>(a, (int)whole.Bytes).SequenceEqual(new ReadOnlySpan<byte>(b, (int)blocks.Bytes)));
    }
}
