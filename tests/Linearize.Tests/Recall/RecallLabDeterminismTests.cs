using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Tests.Cli;
using Linearize.Workflows;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Recall;

/// <summary>
/// <c>lab recall</c> is an instrument: two runs with the same <c>--seed</c> and <c>--threads</c> must give the same
/// numbers, down to every training loss and gradient norm (a tiny lab, two libtorch threads so that parallel
/// reductions are part of what is checked, through every kind of stage: teacher from scratch, attention transfer, LoRA,
/// and a delta-rule row whose b_proj trains in full). Another seed must give other numbers, so the seed
/// really reaches the stages.
/// </summary>
[Collection("Torch")]
public sealed class RecallLabDeterminismTests
{
    private static string[] Args(string outDir, int seed) => new[]
    {
        "lab", "recall", "--out", outDir, "--keys", "16", "--values", "16", "--pairs", "4", "--queries", "4", "--seq-len", "128", "--min-gap", "40",
        "--hidden", "64", "--layers", "2", "--warmup-steps", "0", "--teacher-steps", "4", "--recovery-steps", "2",
        "--train-sequences", "32", "--test-sequences", "16", "--methods", "liger-gdn+neg,lolcats-sw", "--threads", "2",
        "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [Fact]
    public void TheSameSeedAndThreadsGiveTheSameNumbersAndAnotherSeedOthers()
    {
        using var dir = new TempDir();
        var runs = new[] { ("a", 0), ("b", 0), ("c", 1) }.Select(r =>
        {
            string lab = dir.File(r.Item1);
            var (exit, _, err) = CliHarness.Run(Args(lab, r.Item2));
            Assert.True(exit == 0, err);
            return (Report: Report(lab), Training: Training(lab));
        }).ToList();

        Assert.Equal(runs[0].Report, runs[1].Report);
        Assert.Equal(runs[0].Training, runs[1].Training);
        Assert.Contains("liger-gdn+neg", runs[0].Report);
        Assert.Contains("methods/liger-gdn+neg/recovery", runs[0].Training);
        Assert.NotEqual(runs[0].Training, runs[2].Training);

        // A lab directory refuses a run with another thread count: its rows would not be comparable.
        var other = Args(dir.File("a"), 0);
        other[Array.IndexOf(other, "--threads") + 1] = "1";
        var (code, _, error) = CliHarness.Run(other);
        Assert.True(code != 0 && error.Contains("other options", StringComparison.Ordinal), error);

        // The delta-rule row's recovery trained b_proj (LoRA alone would leave it at its zero initialisation: β = σ(0)).
        using var checkpoint = SafetensorsFile.Open(Path.Combine(dir.File("a"), "methods", "liger-gdn+neg", "recovery", "checkpoints", "last.safetensors"));
        foreach (var layer in new[] { 0, 1 })
        {
            using var bProj = checkpoint.Read($"param.model.layers.{layer}.self_attn.b_proj.weight");
            Assert.True(bProj.abs().max().item<float>() > 0, $"layer {layer}: b_proj did not move from zero");
        }
    }

    [Theory]
    [InlineData("liger-gdn", "liger-gdn", false)]
    [InlineData("liger-gdn+neg", "liger-gdn", true)]
    [InlineData("liger-deltanet+neg", "liger-deltanet", true)]
    public void RowsAreMethodNamesWithPlusNegForTheDeltaRule(string text, string method, bool negative)
    {
        var row = RecallLabMethod.Parse(text, "--methods");
        Assert.Equal((method, negative, text), (row.Method.Name, row.NegativeEigenvalues, row.Name));
    }

    [Theory]
    [InlineData("liger-gla+learned", "liger-gla", false, true, false)]
    [InlineData("liger-gla+rmsnorm", "liger-gla", false, false, true)]
    [InlineData("liger-gdn+neg+learned", "liger-gdn", true, true, false)]
    [InlineData("liger-retention+learned+rmsnorm", "liger-retention", false, true, true)]
    public void RowsTakeTheLearnedGateAndTheRmsNormReadOut(string text, string method, bool negative, bool learned, bool rmsnorm)
    {
        var row = RecallLabMethod.Parse(text, "--methods");
        Assert.Equal((method, negative, learned, rmsnorm, text), (row.Method.Name, row.NegativeEigenvalues, row.LearnedGate, row.RmsNorm, row.Name));
        var liger = row.Liger(new LigerOptions { Family = row.Method.Family!.Value });
        Assert.Equal(learned ? LigerGate.Learned : LigerGate.Keys, liger.Gate);
        Assert.Equal(rmsnorm ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None, liger.OutputNorm);
    }

    [Theory]
    [InlineData("lolcats-sw+sparse16", "lolcats-sw", 16)]
    [InlineData("liger-gla+sparse16", "liger-gla", 16)]
    [InlineData("liger-mamba2+rmsnorm+sparse3", "liger-mamba2", 3)]
    [InlineData("liger-gdn+neg+sparse8", "liger-gdn", 8)]
    public void RowsTakeASparseCacheOfNPairs(string text, string method, int sparse)
    {
        var row = RecallLabMethod.Parse(text, "--methods");
        Assert.Equal((method, sparse, text), (row.Method.Name, row.SparseCache, row.Name));
        var liger = row.Liger(new LigerOptions { Family = row.Method.Family ?? LigerFamily.Gla });
        var lolcats = row.Lolcats(new LolcatsOptions());
        Assert.Equal(row.Method.Kind == MethodKind.Liger ? sparse : 0, liger.SparseCache);
        Assert.Equal(row.Method.Kind == MethodKind.Lolcats ? sparse : 0, lolcats.SparseCache);
    }

    [Theory]
    [InlineData("swa+sparse16", "applies only to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm, liger-retention, liger-gdn, liger-deltanet, lolcats-sw")]
    [InlineData("lolcats-tk+sparse4", "applies only to")]
    [InlineData("liger-gsa+sparse4", "applies only to")]
    [InlineData("liger-gla+sparse0", "at least 1")]
    [InlineData("liger-gla+sparsex", "at least 1")]
    public void SparseRowsOnMethodsWithoutTheCacheAreRefused(string text, string message) =>
        Assert.Contains(message, Assert.Throws<LinearizeException>(() => RecallLabMethod.Parse(text, "--methods")).Message);

    [Theory]
    [InlineData("liger-hgrn2+learned", "learned gate")]
    [InlineData("swa+learned", "learned gate")]
    [InlineData("liger-gsa+rmsnorm", "RMSNorm")]
    [InlineData("liger-gdn+rmsnorm", "RMSNorm")]
    public void VariantsOnMethodsWithoutThePieceAreRefused(string text, string message) =>
        Assert.Contains(message, Assert.Throws<LinearizeException>(() => RecallLabMethod.Parse(text, "--methods")).Message);

    /// <summary>A learned-gate row's recovery trains g_proj in full beside LoRA (smoke: a few steps of everything).</summary>
    [Fact]
    public void ALearnedGateRowTrainsItsGateAndAnRmsNormRowRuns()
    {
        using var dir = new TempDir();
        var args = Args(dir.File("lab"), 0);
        args[Array.IndexOf(args, "--methods") + 1] = "liger-gla+learned,liger-gla+rmsnorm";
        var (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        string report = Report(dir.File("lab"));
        Assert.Contains("liger-gla+learned", report);
        Assert.Contains("liger-gla+rmsnorm", report);
        string converted = Path.Combine(dir.File("lab"), "methods", "liger-gla+learned");
        using var checkpoint = SafetensorsFile.Open(Path.Combine(converted, "recovery", "checkpoints", "last.safetensors"));
        Assert.Contains("param.model.layers.0.self_attn.g_proj.weight", checkpoint.Names);
        Assert.Contains("param.model.layers.1.self_attn.g_proj.bias", checkpoint.Names);
    }

    [Fact]
    public void APostHocRowIsItsRowWithTheCacheAttachedAfterTraining()
    {
        var row = RecallLabMethod.Parse("lolcats-sw+sparse16+posthoc", "--methods");
        Assert.Equal(("lolcats-sw+sparse16+posthoc", 16, true, "lolcats-sw"), (row.Name, row.SparseCache, row.CacheAfterTraining, row.Trained.Name));
        Assert.Equal("liger-gla", RecallLabMethod.Parse("liger-gla+posthoc+sparse4", "--methods").Trained.Name);
        Assert.Contains("needs +sparseN", Assert.Throws<LinearizeException>(() => RecallLabMethod.Parse("liger-gla+posthoc", "--methods")).Message);
    }

    /// <summary>LoLA's training-free recipe in the lab: the post-hoc row trains nothing of its own. It trains its row
    /// without the cache in that row's directories, and the row run afterwards reuses that training (same steps, no
    /// new metrics); the evaluated model holds the cache (more state than the row without it).</summary>
    [Fact]
    public void APostHocRowSharesItsTrainingWithTheRowWithoutTheCache()
    {
        using var dir = new TempDir();
        string lab = dir.File("lab");
        var args = Args(lab, 0);
        args[Array.IndexOf(args, "--methods") + 1] = "lolcats-sw+sparse4+posthoc";
        var (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        string posthoc = Path.Combine(lab, "methods", "lolcats-sw+sparse4+posthoc");
        Assert.Equal(new[] { "result.json" }, Directory.EnumerateFileSystemEntries(posthoc).Select(Path.GetFileName).ToArray());
        Assert.True(Directory.Exists(Path.Combine(lab, "methods", "lolcats-sw", "recovery")), "the training was not kept under the row without the cache");
        string metricsBefore = Training(lab);

        args[Array.IndexOf(args, "--methods") + 1] = "lolcats-sw,lolcats-sw+sparse4+posthoc";
        (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        Assert.Equal(metricsBefore, Training(lab));
        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(lab, "report.json")))!["rows"]!.AsArray()
            .Where(r => (string)r!["stage"]! == "recovered").ToDictionary(r => (string)r!["model"]!, r => r!);
        var (plain, cached) = (rows["lolcats-sw"], rows["lolcats-sw+sparse4+posthoc"]);
        Assert.Equal((long)plain["train_steps"]!, (long)cached["train_steps"]!);
        Assert.True((long)cached["state_bytes"]! > (long)plain["state_bytes"]!, "the evaluated post-hoc model has no sparse cache");

        // A run that asks for fewer rows still reports every row the directory holds.
        args[Array.IndexOf(args, "--methods") + 1] = "lolcats-sw";
        (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        Assert.Contains("| lolcats-sw+sparse4+posthoc | recovered |", File.ReadAllText(Path.Combine(lab, "report.md")));
    }

    [Fact]
    public void PlusNegOnAMethodWithoutTheDeltaRuleAndUnknownNamesAreRefused()
    {
        Assert.Contains("delta-rule", Assert.Throws<LinearizeException>(() => RecallLabMethod.Parse("liger-gla+neg", "--methods")).Message);
        Assert.Contains("unknown", Assert.Throws<LinearizeException>(() => RecallLabMethod.Parse("liger-gdn+nope", "--methods")).Message);
        Assert.Contains("twice", Assert.Throws<LinearizeException>(() => new RecallLabOptions
        {
            Methods = new[] { RecallLabMethod.Parse("swa", "x"), RecallLabMethod.Parse("swa", "x") },
        }.Validate()).Message);
    }

    [Fact]
    public void TheDefaultRowsIncludeEveryDeltaRuleFamilyAndTheNegativeEigenvalueRow()
    {
        var names = new RecallLabOptions().Methods.Select(m => m.Name).ToList();
        Assert.Contains("liger-gdn", names);
        Assert.Contains("liger-deltanet", names);
        Assert.Contains("liger-gdn+neg", names);
        Assert.Contains("liger-gla+learned", names);
        Assert.Contains("liger-gla+rmsnorm", names);
        Assert.Contains("liger-gla+sparse16", names);
        Assert.Contains("lolcats-sw+sparse16", names);
    }

    /// <summary>report.json without its wall-clock times.</summary>
    private static string Report(string lab)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(lab, "report.json")))!.AsObject();
        json.Remove("seconds");
        foreach (var row in json["rows"]!.AsArray())
            row!.AsObject().Remove("train_seconds");
        return json.ToJsonString(new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }); // "+neg" as written
    }

    /// <summary>Every training stage's per-step loss, gradient norm and validation loss, in full precision.</summary>
    private static string Training(string lab) => string.Join("\n",
        Directory.EnumerateFiles(lab, "metrics.jsonl", SearchOption.AllDirectories).Order(StringComparer.Ordinal).SelectMany(f =>
            File.ReadLines(f).Select(l => JsonNode.Parse(l)!).Select(m =>
                $"{Path.GetRelativePath(lab, f)} {m["step"]} {m["loss"]} {m["grad_norm"]} {m["eval_loss"]}")));
}
