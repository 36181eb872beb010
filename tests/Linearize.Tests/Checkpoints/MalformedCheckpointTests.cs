using System.Text;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using TorchSharp;

namespace Linearize.Tests.Checkpoints;

/// <summary>Every kind of malformed input gets an error that names the file (and tensor) and the problem.</summary>
[Collection("Torch")]
public sealed class MalformedCheckpointTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string WriteRaw(string header, int dataBytes, long? declaredLength = null)
    {
        string path = _dir.File(Guid.NewGuid().ToString("N") + ".safetensors");
        var json = Encoding.UTF8.GetBytes(header);
        using var s = File.Create(path);
        s.Write(BitConverter.GetBytes((ulong)(declaredLength ?? json.Length)));
        s.Write(json);
        s.Write(new byte[dataBytes]);
        return path;
    }

    private static string Error(Action act) => Assert.ThrowsAny<LinearizeException>(act).Message;

    [Fact]
    public void TruncatedFile()
    {
        string path = _dir.File("short.safetensors");
        File.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        var msg = Error(() => SafetensorsFile.Open(path));
        Assert.Contains(path, msg);
        Assert.Contains("truncated", msg);
    }

    [Fact]
    public void HeaderLengthPastEndOfFile()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw("{}", 0, declaredLength: 1000)));
        Assert.Contains("header length 1000 runs past the end of the file", msg);
    }

    [Fact]
    public void BadJson()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw("{\"a\": [", 0)));
        Assert.Contains("header is not valid JSON", msg);
    }

    [Fact]
    public void OverlappingOffsets()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw(
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12)));
        Assert.Contains("tensor 'y'", msg);
        Assert.Contains("overlap tensor 'x'", msg);
    }

    [Fact]
    public void WrongByteCount()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,8]}}", 8)));
        Assert.Contains("tensor 'w'", msg);
        Assert.Contains("byte count 8 does not match dtype BF16 × shape [3, 2] = 12 bytes", msg);
    }

    [Fact]
    public void UnknownDType()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4)));
        Assert.Contains("tensor 'w'", msg);
        Assert.Contains("unsupported dtype 'F8_E4M3'", msg);
    }

    [Fact]
    public void DataPastEndOfFile()
    {
        var msg = Error(() => SafetensorsFile.Open(WriteRaw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10)));
        Assert.Contains("run past the end of the data section (10 bytes)", msg);
    }

    [Fact]
    public void IndexNamingAMissingShard()
    {
        File.WriteAllText(_dir.File("model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}");
        var msg = Error(() => SafetensorsCheckpoint.Open(_dir.Path));
        Assert.Contains("shard model-00001-of-00002.safetensors is missing", msg);
    }

    [Fact]
    public void ConfigBadJson()
    {
        File.WriteAllText(_dir.File("config.json"), "{ \"hidden_size\": 64, ");
        var msg = Error(() => LlamaConfig.Load(_dir.File("config.json")));
        Assert.Contains("config.json: not valid JSON", msg);
    }

    [Fact]
    public void ConfigMissingKey()
    {
        var j = TinyModels.BaseJson();
        j.Remove("intermediate_size");
        var msg = Error(() => LlamaConfig.FromJson(j, "cfg.json"));
        Assert.Equal("cfg.json: missing required key 'intermediate_size'", msg);
    }

    [Fact]
    public void ConfigUnsupportedModelTypeListsSupported()
    {
        var j = TinyModels.BaseJson();
        j["model_type"] = "gpt2";
        var msg = Error(() => LlamaConfig.FromJson(j, "cfg.json"));
        Assert.Equal("cfg.json: unsupported model_type 'gpt2' (supported: llama, mistral, qwen2, and the Liger authors' " +
            "liger_gla, liger_gsa, liger_hgrn2, liger_mistral_gla, liger_qwen2_gla, liger_qwen3_gla)", msg);
    }

    [Fact]
    public void ConfigUnsupportedRopeScaling()
    {
        var j = TinyModels.BaseJson();
        j["rope_scaling"] = new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 };
        var msg = Error(() => LlamaConfig.FromJson(j, "cfg.json"));
        Assert.Contains("unsupported rope_scaling type 'yarn' (supported: default, linear, llama3)", msg);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        using var model = TinyModels.Create("gqa-untied");
        var dict = model.state_dict().Where(kv => kv.Key != "model.layers.1.mlp.up_proj.weight").ToDictionary(kv => kv.Key, kv => kv.Value);
        using var target = new LlamaForCausalLM(model.Config);
        var msg = Error(() => StateDictLoader.Load(target, new StateDictLoader.DictionarySource("ckpt", dict)));
        Assert.Equal("ckpt: missing 1 tensor(s): model.layers.1.mlp.up_proj.weight", msg);
    }

    [Fact]
    public void UnexpectedAndMisShapedTensorsAreNamed()
    {
        using var model = TinyModels.Create("gqa-untied");
        var dict = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        dict["model.layers.0.self_attn.rotary.inv_freq"] = torch.ones(4);
        dict["model.norm.weight"] = torch.ones(31);
        using var target = new LlamaForCausalLM(model.Config);
        var msg = Error(() => StateDictLoader.Load(target, new StateDictLoader.DictionarySource("ckpt", dict)));
        Assert.Contains("unexpected 1 tensor(s): model.layers.0.self_attn.rotary.inv_freq", msg);
        Assert.Contains("model.norm.weight (checkpoint [31], model [32])", msg);
    }

    [Fact]
    public void TruncatedLlama2cCheckpoint()
    {
        string path = _dir.File("m.bin");
        using (var w = new BinaryWriter(File.Create(path)))
        {
            foreach (int v in new[] { 64, 172, 5, 8, 4, 512, 512 })
                w.Write(v);
            w.Write(new byte[1000]);
        }

        var msg = Error(() => Llama2cCheckpoint.Load(path));
        Assert.Contains(path, msg);
        Assert.Contains("does not match the header's shapes", msg);
    }
}
