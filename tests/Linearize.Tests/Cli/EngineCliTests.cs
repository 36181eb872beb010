using System.Text.Json;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Cli;

/// <summary>The decode engine behind the CLI: generate gives the TorchSharp path's text; bench decode's JSON rows;
/// eval ppl's rounded-weight scoring; bench memory.</summary>
[Collection("Torch")]
public sealed class EngineCliTests
{
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void GenerateOnTheEngineEqualsTheTorchPath()
    {
        string[] args = { "generate", "--model", SharedData.Stories260KDir, "--prompt", "The little dog", "-n", "80" };
        var (exit, engineText, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        var (torchExit, torchText, _) = CliHarness.Run(args.Concat(new[] { "--engine", "torch" }).ToArray());
        Assert.Equal(0, torchExit);
        Assert.Equal(torchText, engineText);
        Assert.True(engineText.Length > 100);

        var (badExit, _, badErr) = CliHarness.Run(args.Concat(new[] { "--engine", "torch", "--weight-dtype", "q8" }).ToArray());
        Assert.Equal(1, badExit);
        Assert.Contains("--weight-dtype applies to the decode engine", badErr);
    }

    /// <summary><c>quantize</c> writes a q8 checkpoint that generates what <c>--weight-dtype q8</c> generates from the
    /// original, and that TorchSharp paths refuse; an explicit --weight-dtype dequantizes it.</summary>
    [Fact]
    public void QuantizedCheckpointGeneratesWhatQ8AtLoadGenerates()
    {
        using var dir = new TempDir();
        string original = dir.File("m"), quantized = dir.File("m-q8");
        var imported = CliHarness.Run("import-llama2c", "--checkpoint", SampleData.Stories260KDir + "/stories260K.bin",
            "--tokenizer", SampleData.Stories260KDir + "/tok512.bin", "--out", original);
        Assert.True(imported.Exit == 0, imported.Err);
        var (exit, output, err) = CliHarness.Run("quantize", "--model", original, "--out", quantized, "--json");
        Assert.True(exit == 0, err);
        using (var doc = JsonDocument.Parse(output))
            Assert.True(doc.RootElement.GetProperty("bytes_after").GetInt64() < doc.RootElement.GetProperty("bytes_before").GetInt64());
        string[] generate = { "generate", "--prompt", "The little dog", "-n", "40" };
        var atLoad = CliHarness.Run(generate.Concat(new[] { "--model", original, "--weight-dtype", "q8" }).ToArray());
        var mapped = CliHarness.Run(generate.Concat(new[] { "--model", quantized }).ToArray());
        Assert.True(atLoad.Exit == 0, atLoad.Err);
        Assert.True(mapped.Exit == 0, mapped.Err);
        Assert.Equal(atLoad.Out, mapped.Out);

        var torch = CliHarness.Run(generate.Concat(new[] { "--model", quantized, "--engine", "torch" }).ToArray());
        Assert.Equal(1, torch.Exit);
        Assert.Contains($"{quantized}: a q8 engine checkpoint", torch.Err);
        var train = CliHarness.Run("convert", "--model", quantized, "--method", "liger-gla", "--out", dir.File("c"));
        Assert.Equal(1, train.Exit);
        Assert.Contains("q8 engine checkpoint", train.Err);
        Assert.False(Directory.Exists(dir.File("c")));

        // inspect reads the config and headers, not the weights: it describes the q8 checkpoint TorchSharp cannot load.
        var inspected = CliHarness.Run("inspect", "--model", quantized, "--json");
        Assert.True(inspected.Exit == 0, inspected.Err);
        using (var doc = JsonDocument.Parse(inspected.Out))
        {
            Assert.Equal(260032, doc.RootElement.GetProperty("parameters").GetInt64());
            Assert.Equal("linearize-q8", doc.RootElement.GetProperty("quantization").GetString());
        }

        // … and still names a truncated weight file.
        string weights = Directory.GetFiles(quantized, "*.safetensors").Single();
        using (var f = File.OpenWrite(weights))
            f.SetLength(f.Length - 100);
        var truncated = CliHarness.Run("inspect", "--model", quantized);
        Assert.Equal(1, truncated.Exit);
        Assert.Contains(weights, truncated.Err);
        Assert.Single(truncated.Err.Trim().Split('\n'));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void BenchDecodeComparesModelsInOneRun()
    {
        using var dir = new TempDir();
        string converted = dir.File("gla"), png = dir.File("decode.png");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "liger-gla", "--out", converted).Exit);
        var (exit, output, err) = CliHarness.Run("bench", "decode", "--model", SharedData.Stories260KDir, "--model", converted,
            "--contexts", "16,100", "--new-tokens", "3", "--batch", "2", "--weight-dtype", "bfloat16", "--no-bandwidth", "--json", "--plot", png);
        Assert.True(exit == 0, err);
        Assert.Contains($"wrote {png}", err);
        Assert.True(new FileInfo(png).Length > 1000);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(2, doc.RootElement.GetProperty("batch").GetInt32());
        var models = doc.RootElement.GetProperty("models").EnumerateArray().ToArray();
        Assert.Equal(2, models.Length);
        foreach (var m in models)
        {
            Assert.Equal("bfloat16", m.GetProperty("weight_dtype").GetString());
            Assert.True(m.GetProperty("peak_rss_bytes").GetInt64() > 10L << 20);
            var rows = m.GetProperty("results").EnumerateArray().ToArray();
            Assert.Equal(new[] { 16, 100 }, rows.Select(x => x.GetProperty("context").GetInt32()));
            foreach (var row in rows)
            {
                Assert.True(row.GetProperty("ms_per_token").GetDouble() > 0);
                Assert.True(row.GetProperty("tokens_per_second").GetDouble() > 0);
                Assert.True(row.GetProperty("gb_per_s").GetDouble() > 0);
                Assert.Equal(JsonValueKind.Null, row.GetProperty("fraction_of_floor").ValueKind); // --no-bandwidth skips both floors
            }
        }

        // The teacher's state grows with the context; the converted model's does not.
        long State(int model, int row) => models[model].GetProperty("results")[row].GetProperty("state_bytes").GetInt64();
        Assert.True(State(0, 1) > 5 * State(0, 0));
        Assert.Equal(State(1, 0), State(1, 1));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void RoundedWeightsCostLittlePerplexity()
    {
        double Nll(string dtype)
        {
            var (exit, output, err) = CliHarness.Run("eval", "ppl", "--model", SharedData.Stories260KDir, "--text", SharedData.TinyStoriesVal,
                "--max-docs", "40", "--weight-dtype", dtype, "--json");
            Assert.True(exit == 0, err);
            return JsonDocument.Parse(output).RootElement.GetProperty("mean_nll").GetDouble();
        }

        double f32 = Nll("float32"), bf16 = Nll("bfloat16"), q8 = Nll("q8");
        Assert.NotEqual(f32, bf16);
        Assert.NotEqual(f32, q8);
        Assert.True(Math.Abs(bf16 - f32) < 0.02 && Math.Abs(q8 - f32) < 0.02, $"f32 {f32}, bf16 {bf16}, q8 {q8}");
    }

    /// <summary>bfloat16 weights multiply bfloat16-rounded inputs unless <c>--float32-activations</c> is given, in the
    /// engine and in <c>eval ppl</c> alike (which scores what the engine computes); the old <c>--bf16-products</c> still
    /// runs and means the default; the flags are one-line errors where they mean nothing.</summary>
    [Fact]
    public void BFloat16WeightsRoundTheirInputsUnlessTold()
    {
        (double Nll, bool Products) Ppl(params string[] extra)
        {
            var (exit, output, err) = CliHarness.Run(new[] { "eval", "ppl", "--model", SampleData.Stories260KDir, "--text",
                SampleData.TinyStoriesExcerpt, "--max-docs", "20", "--json" }.Concat(extra).ToArray());
            Assert.True(exit == 0, err);
            var root = JsonDocument.Parse(output).RootElement;
            return (root.GetProperty("mean_nll").GetDouble(), root.GetProperty("bf16_products").GetBoolean());
        }

        var rounded = Ppl("--weight-dtype", "bfloat16");
        var widened = Ppl("--weight-dtype", "bfloat16", "--float32-activations");
        var old = Ppl("--weight-dtype", "bfloat16", "--bf16-products");
        Assert.True(rounded.Products);
        Assert.False(widened.Products);
        Assert.Equal(rounded, old);
        Assert.NotEqual(rounded.Nll, widened.Nll);
        Assert.True(Math.Abs(rounded.Nll - widened.Nll) < 0.01, $"{rounded.Nll} vs {widened.Nll}");
        Assert.False(Ppl().Products);

        string[] generate = { "generate", "--model", SampleData.Stories260KDir, "--prompt", "The little dog", "-n", "20", "--weight-dtype" };
        var products = CliHarness.Run(generate.Append("bfloat16").ToArray());
        var floats = CliHarness.Run(generate.Concat(new[] { "bfloat16", "--float32-activations" }).ToArray());
        Assert.True(products.Exit == 0, products.Err);
        Assert.True(floats.Exit == 0, floats.Err);

        var q8 = CliHarness.Run(generate.Concat(new[] { "q8", "--float32-activations" }).ToArray());
        Assert.Equal(1, q8.Exit);
        Assert.Contains("--float32-activations sets how bfloat16 weights multiply: add --weight-dtype bfloat16", q8.Err);
        var both = CliHarness.Run(generate.Concat(new[] { "bfloat16", "--float32-activations", "--bf16-products" }).ToArray());
        Assert.Equal(1, both.Exit);
        Assert.Contains("contradict", both.Err);
        var torch = CliHarness.Run(generate.Concat(new[] { "float32", "--float32-activations", "--engine", "torch" }).ToArray());
        Assert.Equal(1, torch.Exit);
        Assert.Contains("--float32-activations applies to the decode engine", torch.Err);
    }

    [Fact]
    public void BenchMemoryReportsABandwidthAndALatencyPerRound()
    {
        var (exit, output, err) = CliHarness.Run("bench", "memory", "--mib", "64", "--rounds", "2", "--threads", "2", "--json");
        Assert.True(exit == 0, err);
        var root = JsonDocument.Parse(output).RootElement;
        var rounds = root.GetProperty("rounds").EnumerateArray().ToArray();
        Assert.Equal(2, rounds.Length);
        foreach (var round in rounds)
        {
            double gb = round.GetProperty("gb_per_s").GetDouble(), ns = round.GetProperty("latency_ns").GetDouble();
            Assert.True(gb > 0.1 && ns > 0, round.ToString());
            Assert.Equal(gb * 1e9 * ns * 1e-9 / 64 / 2, round.GetProperty("lines_in_flight_per_thread").GetDouble(), 0.2); // Little's law
        }

        Assert.Contains(root.GetProperty("gb_per_s").GetDouble(), rounds.Select(x => x.GetProperty("gb_per_s").GetDouble()));

        var (badExit, _, badErr) = CliHarness.Run("bench", "memory", "--rounds", "0");
        Assert.Equal(1, badExit);
        Assert.Contains("--rounds", badErr);
    }
}
