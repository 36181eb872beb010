using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Authors;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Checkpoints;

/// <summary>
/// The Liger authors' directories (<c>config.json</c> with <c>model_type: liger_*</c> beside the teacher's weights) load
/// through every <c>--model</c> path as the layer their code computes, and <c>export --format liger</c> writes them back.
/// </summary>
[Collection("Torch")]
public sealed class LigerFormatTests
{
    /// <summary>The keys of the authors' <c>checkpoints/liger_gla_base/config.json</c>, with a teacher's values.</summary>
    private static JsonObject AuthorsConfig(LlamaConfig teacher, string modelType, string architecture, int poolSize)
    {
        var j = (JsonObject)teacher.Raw.DeepClone();
        j["architectures"] = new JsonArray(architecture);
        j["model_type"] = modelType;
        j["attention_dropout"] = 0.0;
        j["expand_k"] = 1;
        j["expand_v"] = 1;
        j["hidden_act"] = "silu";
        j["hidden_ratio"] = 4;
        j["initializer_range"] = 0.02;
        j["pool_size"] = poolSize;
        j["pretraining_tp"] = 1;
        j["rope_scaling"] ??= null;
        j["transformers_version"] = "4.47.1";
        j["use_cache"] = true;
        return j;
    }

    /// <summary>Writes <paramref name="teacher"/> as an authors' directory: their config, its weights (+ extra tensors).</summary>
    private static void WriteAuthorsDirectory(LlamaForCausalLM teacher, string dir, string modelType, int poolSize,
        string? tokenizer = null, IEnumerable<KeyValuePair<string, Tensor>>? extra = null)
    {
        var type = LigerFormat.Find(modelType)!;
        Directory.CreateDirectory(dir);
        var tensors = teacher.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)).ToList();
        if (extra is not null)
            tensors.AddRange(extra);
        SafetensorsWriter.WriteCheckpoint(dir, tensors);
        File.WriteAllText(Path.Combine(dir, "config.json"),
            AuthorsConfig(teacher.Config, modelType, type.Architecture, poolSize).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        ModelLoader.CopyTokenizer(tokenizer, dir);
    }

    private static LinearizationConfig CodeLayer(string method, int? slots = null) => new()
    {
        Method = LinearizationMethods.Get(method, "test"),
        Liger = new LigerOptions { Family = LinearizationMethods.Get(method, "test").Family!.Value, Window = LigerFormat.CodeWindow, Slots = slots },
    };

    private static Tensor Ids(int vocab, int length, ulong seed)
    {
        var gen = new torch.Generator(seed);
        return randint(0, vocab, new long[] { 2, length }, dtype: ScalarType.Int64, generator: gen);
    }

    private static LlamaForCausalLM Stories260K() =>
        ModelLoader.Load(ModelSource.Resolve(Path.Combine(SampleData.Stories260KDir, "stories260K.bin")));

    [Fact]
    public void Stories260KLigerGlaDirectoryEqualsTheUntrainedConversion()
    {
        using var dir = new TempDir();
        string tok = Path.Combine(SampleData.Stories260KDir, "tok512.bin");
        string teacherDir = dir.File("teacher"), ligerDir = dir.File("liger_gla"), converted = dir.File("converted");
        using (var teacher = Stories260K())
        {
            ModelLoader.SaveHuggingFace(teacher, teacher.Config, teacherDir, tok);
            WriteAuthorsDirectory(teacher, ligerDir, "liger_gla", poolSize: teacher.Config.HeadDim, tokenizer: tok);
        }

        var (exit, _, err) = CliHarness.Run("convert", "--model", teacherDir, "--method", "liger-gla", "--window", "65", "--out", converted);
        Assert.True(exit == 0, err);

        // Logits: bit for bit, over more tokens than the window holds.
        using (var ours = ModelLoader.Load(ModelSource.Resolve(converted)))
        using (var theirs = ModelLoader.Load(ModelSource.Resolve(ligerDir)))
        using (no_grad())
        {
            Assert.All(theirs.Model.Layers, l => Assert.Equal("liger-gla(window=65, α=0.5, β=0.5, norm=16)", l.SelfAttention.Describe()));
            using var ids = Ids(512, 200, 3);
            TensorAssert.BitEqual("logits", ours.Forward(ids), theirs.Forward(ids));
        }

        // Perplexity through the CLI, as a user runs it.
        string Ppl(string model)
        {
            var (code, json, e) = CliHarness.Run("eval", "ppl", "--model", model, "--text", SampleData.TinyStoriesExcerpt, "--max-docs", "5", "--json");
            Assert.True(code == 0, e);
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.GetProperty("ppl").GetRawText() + " " + doc.RootElement.GetProperty("tokens").GetRawText();
        }

        Assert.Equal(Ppl(converted), Ppl(ligerDir));
    }

    public static IEnumerable<object[]> AuthorsTypes() => new[]
    {
        new object[] { "liger_gla", "gqa-untied", "liger-gla", 8 },
        new object[] { "liger_gla", "mha-tied", "liger-gla", 8 },
        new object[] { "liger_hgrn2", "gqa-untied", "liger-hgrn2", 8 },
        new object[] { "liger_gsa", "gqa-untied", "liger-gsa", 4 },
        new object[] { "liger_mistral_gla", "mistral-window", "liger-gla", 8 },
        new object[] { "liger_qwen2_gla", "qwen2-bias", "liger-gla", 8 },
        new object[] { "liger_qwen3_gla", "gqa-untied", "liger-gla", 8 },
        new object[] { "liger_qwen3_gla", "qwen2-bias", "liger-gla", 8 },
    };

    [Theory]
    [MemberData(nameof(AuthorsTypes))]
    public void EveryLigerTypeLoadsAsTheLayerTheirCodeComputes(string modelType, string variant, string method, int poolSize)
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create(variant);
        // A Qwen3 teacher carries per-head q/k RMSNorms that the Liger attention never reads.
        var extra = modelType == "liger_qwen3_gla"
            ? Enumerable.Range(0, teacher.Config.NumHiddenLayers).SelectMany(i => new[] { "q_norm", "k_norm" }
                .Select(n => new KeyValuePair<string, Tensor>($"model.layers.{i}.self_attn.{n}.weight", ones(teacher.Config.HeadDim))))
            : null;
        WriteAuthorsDirectory(teacher, dir.Path, modelType, poolSize, extra: extra);

        using var expected = Converter.Convert(teacher, CodeLayer(method, method == "liger-gsa" ? poolSize : null));
        using var loaded = ModelLoader.Load(ModelSource.Resolve(dir.Path));
        Assert.Equal(modelType, LigerFormat.SourceModelType(loaded.Config));
        Assert.NotEmpty(LigerFormat.Notes(loaded.Config));
        using (no_grad())
        {
            using var ids = Ids(teacher.Config.VocabSize, 90, 5);
            TensorAssert.BitEqual(modelType, expected.Forward(ids), loaded.Forward(ids));
        }

        // inspect names the format and where their code and the paper differ.
        var (exit, output, err) = CliHarness.Run("inspect", "--model", dir.Path, "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var notes = doc.RootElement.GetProperty("notes").EnumerateArray().Select(n => n.GetString()!).ToList();
        Assert.Contains($"read from the Liger authors' {modelType} format", notes);
        Assert.Contains(notes, n => n.Contains("the paper says 64"));
    }

    [Fact]
    public void ExportThenImportIsTheIdentity()
    {
        using var dir = new TempDir();
        string tok = Path.Combine(SampleData.Stories260KDir, "tok512.bin");
        foreach (var (method, slots, modelType) in new[] { ("liger-gla", (int?)null, "liger_gla"), ("liger-gsa", 4, "liger_gsa"), ("liger-hgrn2", null, "liger_hgrn2") })
        {
            string ours = dir.File(method), exported = dir.File(method + "-exported");
            using (var teacher = Stories260K())
                Converter.ConvertToDirectory(teacher, CodeLayer(method, slots), ours, tok).Dispose();
            var (exit, output, err) = CliHarness.Run("export", "--format", "liger", "--model", ours, "--out", exported);
            Assert.True(exit == 0, err);
            Assert.Contains(modelType, output);

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(exported, "config.json")))!.AsObject();
            Assert.Equal(modelType, config["model_type"]!.GetValue<string>());
            Assert.Equal(LigerFormat.Find(modelType)!.Architecture, config["architectures"]![0]!.GetValue<string>());
            Assert.Null(config[LinearizationConfig.SectionName]);
            Assert.True(File.Exists(Path.Combine(exported, "tok512.bin")));

            using var a = ModelLoader.Load(ModelSource.Resolve(ours));
            using var b = ModelLoader.Load(ModelSource.Resolve(exported));
            Assert.Equal(LinearizationConfig.FromModel(a.Config)!.ToJson().ToJsonString(), LinearizationConfig.FromModel(b.Config)!.ToJson().ToJsonString());
            var sa = a.state_dict();
            var sb = b.state_dict();
            Assert.Equal(sa.Keys.Order(), sb.Keys.Order());
            foreach (var (name, t) in sa)
                TensorAssert.BitEqual(name, t, sb[name]);
        }
    }

    [Theory]
    [InlineData(new[] { "--method", "liger-gla" }, "'linearization.window' is 64")]
    [InlineData(new[] { "--method", "liger-gla", "--window", "65", "--mix-alpha", "0.7" }, "'linearization.alpha'/'beta'")]
    [InlineData(new[] { "--method", "liger-gla", "--window", "65", "--softmax-layers", "1" }, "'linearization.softmax_layers'")]
    [InlineData(new[] { "--method", "liger-gla", "--window", "65", "--normalize-recurrent" }, "'linearization.normalize_recurrent'")]
    [InlineData(new[] { "--method", "liger-mamba2", "--window", "65" }, "method liger-mamba2")]
    [InlineData(new[] { "--method", "swa" }, "method swa")]
    public void ExportRefusesWhatTheirCodeCannotExpress(string[] convertArgs, string expected)
    {
        using var dir = new TempDir();
        string converted = dir.File("m"), exported = dir.File("out");
        var (exit, _, err) = CliHarness.Run(new[] { "convert", "--model", Path.Combine(SampleData.Stories260KDir, "stories260K.bin"), "--out", converted }
            .Concat(convertArgs).ToArray());
        Assert.True(exit == 0, err);
        (exit, _, err) = CliHarness.Run("export", "--format", "liger", "--model", converted, "--out", exported);
        Assert.Equal(1, exit);
        string line = err.Split('\n')[0];
        Assert.Contains(expected, line);
        Assert.Contains(Path.Combine(converted, "config.json"), line);
        Assert.Contains("refuses", line);
        Assert.False(Directory.Exists(exported) && Directory.EnumerateFileSystemEntries(exported).Any());
    }

    [Fact]
    public void ConfigErrorsNameTheFileAndField()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("qwen2-bias");
        WriteAuthorsDirectory(teacher, dir.Path, "liger_qwen2_gla", 8);
        string path = Path.Combine(dir.Path, "config.json");
        var j = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        j["head_dim"] = 16;
        File.WriteAllText(path, j.ToJsonString());
        var e = Assert.Throws<LinearizeException>(() => LlamaConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'head_dim'", e.Message);

        j["head_dim"] = 8;
        j["model_type"] = "liger_gsa";
        j["pool_size"] = 0;
        File.WriteAllText(path, j.ToJsonString());
        e = Assert.Throws<LinearizeException>(() => LlamaConfig.Load(path));
        Assert.Contains("'pool_size' must be at least 1", e.Message);
    }
}
