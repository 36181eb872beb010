using System.Text.Json;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Cli;

[Collection("Torch")]
public sealed class CliTests
{
    private static string OneLine(string err)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        return lines[0];
    }

    [Fact]
    public void MissingModelIsAOneLineError()
    {
        var (exit, _, err) = CliHarness.Run("generate", "--model", "/nonexistent/model", "--prompt", "hi");
        Assert.Equal(1, exit);
        Assert.Contains("/nonexistent/model: no such model file or directory", OneLine(err));
    }

    [Fact]
    public void HelpNamesTheLinearizeCommandAndEveryCommand()
    {
        var (exit, output, _) = CliHarness.Run("--help");
        Assert.Equal(0, exit);
        Assert.Contains("linearize [command] [options]", output);
        foreach (var command in new[] { "generate", "eval", "inspect", "convert", "train", "merge", "pipeline", "import-llama2c", "import-lolcats", "export", "bench", "create-random", "chat", "serve", "distill", "data", "lab", "quantize" })
            Assert.Contains($"  {command} ", output);
        var (subExit, subOutput, _) = CliHarness.Run("eval", "ppl", "--help");
        Assert.Equal(0, subExit);
        Assert.Contains("linearize eval ppl [options]", subOutput);
    }

    [Fact]
    public void UnknownFlagFails()
    {
        var (exit, _, err) = CliHarness.Run("generate", "--model", "x", "--prompt", "hi", "--bogus");
        Assert.NotEqual(0, exit);
        Assert.Contains("--bogus", err);
    }

    [Fact]
    public void UnreadableConfigIsAOneLineError()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), "{ not json");
        var (exit, _, err) = CliHarness.Run("inspect", "--model", dir.Path);
        Assert.Equal(1, exit);
        Assert.Contains("config.json: not valid JSON", OneLine(err));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void EmptyPromptWithoutBosIsRejected()
    {
        var (exit, _, err) = CliHarness.Run("generate", "--model", SharedData.Stories260KDir, "--prompt", "", "--no-bos");
        Assert.Equal(1, exit);
        Assert.Contains("prompt is empty", OneLine(err));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void TooManyNewTokensIsRejected()
    {
        var (exit, _, err) = CliHarness.Run("generate", "--model", SharedData.Stories260KDir, "--prompt", "Hi", "--max-new-tokens", "600");
        Assert.Equal(1, exit);
        Assert.Contains("exceeds the model's context of 512 positions", OneLine(err));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "golden/stories260K-greedy.jsonl")]
    public void GenerateStreamsTheGoldenGreedyText()
    {
        var golden = Jsonl.Read(SharedData.PathOf("golden/stories260K-greedy.jsonl")).First();
        var tok = Linearize.Tokenization.TokenizerLoader.Load(SharedData.Tok512);
        var ids = golden.Ints("prompt_ids").Concat(golden.Ints("generated_ids").Take(40)).ToArray();
        var (exit, stdout, _) = CliHarness.Run("generate", "--model", SharedData.Stories260KBin, "--prompt",
            golden.GetProperty("prompt").GetString()!, "--max-new-tokens", "40");
        Assert.Equal(0, exit);
        Assert.Equal(tok.Decode(ids) + "\n", stdout);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void ImportLlama2cWritesALoadableEquivalentDirectory()
    {
        using var dir = new TempDir();
        string outDir = dir.File("hf");
        var (exit, _, err) = CliHarness.Run("import-llama2c", "--checkpoint", SharedData.Stories260KBin, "--tokenizer", SharedData.Tok512, "--out", outDir);
        Assert.True(exit == 0, err);
        Assert.True(File.Exists(System.IO.Path.Combine(outDir, "tok512.bin")));
        var (a, _, _) = ModelLoader.LoadWithTokenizer(SharedData.Stories260KBin);
        var (b, _, _) = ModelLoader.LoadWithTokenizer(outDir);
        using var _a = a;
        using var _b = b;
        foreach (var (name, t) in a.state_dict())
            TensorAssert.BitEqual(name, t, b.state_dict()[name]);

        var (inspectExit, json, _) = CliHarness.Run("inspect", "--model", outDir, "--json");
        Assert.Equal(0, inspectExit);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(260032, doc.RootElement.GetProperty("parameters").GetInt64());
        Assert.Equal("huggingface", doc.RootElement.GetProperty("format").GetString());
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void EvalPplJsonHasTheDocumentedFields()
    {
        var (exit, json, err) = CliHarness.Run("eval", "ppl", "--model", SharedData.Stories260KDir, "--text", SharedData.TinyStoriesVal,
            "--max-docs", "10", "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(json);
        var r = doc.RootElement;
        Assert.True(r.GetProperty("mean_nll").GetDouble() > 0);
        Assert.Equal(Math.Exp(r.GetProperty("mean_nll").GetDouble()), r.GetProperty("ppl").GetDouble(), 4);
        Assert.True(r.GetProperty("tokens").GetInt64() > 100);
    }

    [Fact]
    public void StrideWithoutRollingIsRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("t.txt"), "hello\n");
        var (exit, _, err) = CliHarness.Run("eval", "ppl", "--model", "x", "--text", dir.File("t.txt"), "--stride", "4");
        Assert.Equal(1, exit);
        Assert.Contains("--stride only applies with --rolling", OneLine(err));
    }
}
