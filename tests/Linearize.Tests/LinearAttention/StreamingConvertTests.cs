using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>Conversion file by file (teacher never loaded) writes a directory that loads as exactly the model the
/// in-memory conversion writes.</summary>
[Collection("Torch")]
public sealed class StreamingConvertTests
{
    public static IEnumerable<object[]> Cases() =>
        LinearizationMethods.Names.Select(m => new object[] { m, "float32" }).Concat(new[]
        {
            new object[] { "liger-gdn", "bfloat16" },
            new object[] { "lolcats-sw", "bfloat16" },
            new object[] { "liger-gla", "bfloat16" },
        });

    [Theory]
    [MemberData(nameof(Cases))]
    public void StreamedEqualsInMemory(string method, string dtypeName)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var dir = TinyModels.TempDirectory();
        string teacherDir = Path.Combine(dir.Path, "teacher"), inMemory = Path.Combine(dir.Path, "a"), streamed = Path.Combine(dir.Path, "b");
        using (var teacher = TinyModels.Create("gqa-untied"))
            ModelLoader.SaveHuggingFace(teacher, teacher.Config, teacherDir, null);
        var lin = LigerConversionTests.Lin(method) with { SoftmaxLayers = new[] { 1 } };
        if (lin.IsLolcats)
            lin = LolcatsConversionTests.Lin(method, softmaxLayers: new[] { 1 });

        using (var teacher = ModelLoader.Load(ModelSource.Resolve(teacherDir, null), dtype))
        using (Converter.ConvertToDirectory(teacher, lin, inMemory, null))
        {
        }

        var result = StreamingConverter.Convert(teacherDir, lin, dtype, streamed, null);
        Assert.Equal(dtype == ScalarType.Float32 ? 1 : 0, result.LinkedFiles);
        Assert.Equal(dtype == ScalarType.Float32 ? 0 : 1, result.CopiedFiles);
        bool adds = LinearizationMethods.Get(method, "test").IsDeltaRule || lin.IsLolcats;
        Assert.Equal(adds, result.AddedTensors > 0);

        Assert.Equal(LlamaConfig.Load(Path.Combine(inMemory, "config.json")).Raw.ToJsonString(),
            LlamaConfig.Load(Path.Combine(streamed, "config.json")).Raw.ToJsonString());
        using var a = ModelLoader.Load(ModelSource.Resolve(inMemory, null), dtype);
        using var b = ModelLoader.Load(ModelSource.Resolve(streamed, null), dtype);
        var sa = a.state_dict();
        var sb = b.state_dict();
        Assert.Equal(sa.Keys.Order(), sb.Keys.Order());
        foreach (var (name, t) in sa)
            Assert.True(t.equal(sb[name]).all().item<bool>(), $"{method}: {name} differs");
        Assert.Equal(a.DescribeMixers(), result.Mixers);
    }

    [Fact]
    public void ATeacherWithAWrongTensorIsRefusedNamingTheFile()
    {
        using var dir = TinyModels.TempDirectory();
        string teacherDir = Path.Combine(dir.Path, "teacher");
        using (var teacher = TinyModels.Create("gqa-untied"))
        {
            var state = teacher.state_dict().Where(kv => kv.Key != "model.norm.weight").ToList();
            Directory.CreateDirectory(teacherDir);
            SafetensorsWriter.WriteCheckpoint(teacherDir, state);
            teacher.Config.Save(Path.Combine(teacherDir, "config.json"));
        }

        var e = Assert.Throws<LinearizeException>(() =>
            StreamingConverter.Convert(teacherDir, LigerConversionTests.Lin("liger-gla"), ScalarType.Float32, Path.Combine(dir.Path, "out"), null));
        Assert.Contains("missing tensor model.norm.weight", e.Message);
        Assert.Contains(teacherDir, e.Message);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")));
    }
}
