using System.Text.Json;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Recall;

/// <summary>
/// <c>lab recall</c> end to end in a small configuration (16 keys and values, 128-token sequences, a hidden-64 teacher):
/// the pipeline runs and reports, the teacher learns well above chance, and a 64-token sliding window falls behind it
/// on pairs stated more than 64 tokens back — the check that the task really needs the far context.
/// </summary>
[Collection("Torch")]
public sealed class RecallLabTests
{
    [Fact]
    public void TheSmallLabRunsTheTeacherLearnsAndTheWindowCannotReachBack()
    {
        using var dir = new TempDir();
        string lab = dir.File("lab");
        string[] args =
        {
            "lab", "recall", "--out", lab, "--keys", "16", "--values", "16", "--pairs", "4", "--queries", "4", "--seq-len", "128", "--min-gap", "40",
            "--hidden", "64", "--layers", "2", "--warmup-steps", "150", "--teacher-steps", "40", "--recovery-steps", "2",
            "--train-sequences", "400", "--test-sequences", "48", "--methods", "swa,liger-gla",
        };
        var (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        foreach (var f in new[] { "report.md", "report.json", "recall.png", "data/test.jsonl" })
            Assert.True(File.Exists(Path.Combine(lab, f)), $"{f} missing");
        var rows = JsonDocument.Parse(File.ReadAllText(Path.Combine(lab, "report.json"))).RootElement.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(new[] { "teacher", "swa", "swa", "liger-gla", "liger-gla" }, rows.Select(r => r.GetProperty("model").GetString()));
        double Bucket(JsonElement row, int i) => row.GetProperty("recall").GetProperty("by_distance")[i].GetProperty("accuracy").GetDouble();
        double chance = 1.0 / 16;
        var teacher = rows[0];
        Assert.True(teacher.GetProperty("recall").GetProperty("accuracy").GetDouble() > 4 * chance,
            $"the teacher did not learn: {teacher.GetProperty("recall")}");
        // Beyond 64 tokens the window model is left with guessing among the values the sequence stated (two layers of
        // 64-token windows can carry "which values occurred" across 128 tokens, not which value belongs to which key):
        // it must fall well behind the teacher there.
        Assert.True(Bucket(rows[1], 1) < Bucket(teacher, 1) - 0.08,
            $"a 64-token window recalls pairs 65–128 tokens back as well as the teacher: {rows[1].GetProperty("recall")} vs {teacher.GetProperty("recall")}");
        Assert.True(rows[3].GetProperty("state_bytes").GetInt64() > rows[1].GetProperty("state_bytes").GetInt64()); // GLA adds a state to the window

        // A second run on the same --out reuses every stage.
        (exit, _, err) = CliHarness.Run(args);
        Assert.True(exit == 0, err);
        Assert.Contains("teacher: reusing", err);
        Assert.Contains("swa: reusing", err);
    }
}
