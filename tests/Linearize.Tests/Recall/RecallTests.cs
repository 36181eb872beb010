using System.Text.Json;
using Linearize.Checkpoints;
using Linearize.Data;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Recall;

/// <summary>Issue 14: the MQAR generator, its file, full-parameter training and recall evaluation through the CLI.</summary>
[Collection("Torch")]
public sealed class RecallTests
{
    private static readonly RecallTaskOptions Small = new() { Keys = 8, Values = 8, Pairs = 4, Queries = 6, SequenceLength = 64, MinGap = 4 };

    [Fact]
    public void SequencesStateEachPairFirstAndEveryQueryAsksForAPairsValue()
    {
        var a = RecallGenerator.Generate(Small, 50, seed: 3);
        var b = RecallGenerator.Generate(Small, 50, seed: 3);
        Assert.Equal(a.Select(e => string.Join(",", e.Tokens)), b.Select(e => string.Join(",", e.Tokens))); // seeded
        foreach (var e in a)
        {
            Assert.Equal(64, e.Tokens.Length);
            var keys = Enumerable.Range(0, 4).Select(i => e.Tokens[2 * i]).ToArray();
            Assert.Equal(4, keys.Distinct().Count());
            Assert.All(keys, k => Assert.InRange(k, 1, 8));
            Assert.Equal(6, e.QueryPositions.Length);
            for (int q = 0; q < 6; q++)
            {
                int p = e.QueryPositions[q];
                Assert.True(p >= 2 * 4 + 4, "a query inside the pairs or the gap");
                int keyAt = p - e.Distances[q];
                Assert.Equal(e.Tokens[keyAt], e.Tokens[p]);         // the distance leads back to the same key …
                Assert.Equal(e.Tokens[keyAt + 1], e.Tokens[p + 1]); // … whose value is the answer …
                for (int between = keyAt + 1; between < p; between++)
                    Assert.NotEqual(e.Tokens[p], e.Tokens[between]); // … and nothing nearer states the pair
                Assert.InRange(e.Tokens[p + 1], 9, 16);
            }

            var t = RecallGenerator.ToTraining(e);
            Assert.Equal(6, t.LabelledTokens);
            Assert.All(e.QueryPositions, p => Assert.Equal(e.Tokens[p + 1], t.Labels[p + 1]));
        }

        Assert.Throws<LinearizeException>(() => RecallGenerator.Generate(Small with { Queries = 40 }, 1, 0));
        Assert.Throws<LinearizeException>(() => RecallGenerator.Generate(Small with { Pairs = 9 }, 1, 0));
    }

    [Fact]
    public void TheFileRoundTripsAndBadRecordsNameTheirLine()
    {
        using var dir = new TempDir();
        string path = dir.File("r.jsonl");
        var examples = RecallGenerator.Generate(Small, 5, 1);
        RecallGenerator.Write(path, examples, Small);
        Assert.True(TokenFile.IsTokenFile(path));
        var back = RecallGenerator.Read(path);
        Assert.Equal(examples.Select(e => (string.Join(",", e.Tokens), string.Join(",", e.QueryPositions), string.Join(",", e.Distances))),
            back.Select(e => (string.Join(",", e.Tokens), string.Join(",", e.QueryPositions), string.Join(",", e.Distances))));
        Assert.Equal(Small.Pairs, JsonDocument.Parse(File.ReadAllText(path + ".task.json")).RootElement.GetProperty("pairs").GetInt32());

        File.AppendAllText(path, "{\"input_ids\": [1, 2], \"labels\": [1]}\n");
        var e = Assert.Throws<LinearizeException>(() => TokenFile.Read(path).ToList());
        Assert.StartsWith($"{path}:6: 'labels' has 1 entries", e.Message);
        string plain = dir.File("plain.jsonl");
        File.WriteAllText(plain, "{\"input_ids\": [1, 2]}\n");
        Assert.Contains("not a recall file", Assert.Throws<LinearizeException>(() => RecallGenerator.Read(plain)).Message);
    }

    [Fact]
    public void FullTrainingFromScratchThroughTheCliChangesEveryWeightAndEvalRecallReportsBuckets()
    {
        using var dir = new TempDir();
        string model = dir.File("teacher"), data = dir.File("train.jsonl"), test = dir.File("test.jsonl"), run = dir.File("run");
        var (exit, _, err) = CliHarness.Run("create-random", "--preset", "recall", "--vocab-size", "17", "--max-positions", "64", "--out", model);
        Assert.True(exit == 0, err);
        string[] task = { "--keys", "8", "--values", "8", "--pairs", "4", "--queries", "6", "--seq-len", "64", "--min-gap", "4" };
        (exit, _, err) = CliHarness.Run(new[] { "data", "recall", "--count", "64", "--seed", "1", "--out", data }.Concat(task).ToArray());
        Assert.True(exit == 0, err);
        Assert.Contains("beyond 64", err);
        (exit, _, err) = CliHarness.Run(new[] { "data", "recall", "--count", "8", "--seed", "2", "--out", test }.Concat(task).ToArray());
        Assert.True(exit == 0, err);

        (exit, _, err) = CliHarness.Run("train", "--model", model, "--data", data, "--full", "--seq-len", "64", "--batch-size", "4", "--grad-accum", "1",
            "--max-steps", "3", "--eval-every", "3", "--lr", "1e-3", "--out", run);
        Assert.True(exit == 0, err);
        Assert.Contains("full training:", err);
        Assert.False(Directory.Exists(Path.Combine(run, "adapter")));
        using (var before = SafetensorsCheckpoint.Open(model))
        using (var after = SafetensorsCheckpoint.Open(Path.Combine(run, "model")))
            foreach (var name in before.Names)
                Assert.False(before.Read(name).allclose(after.Read(name), 0, 0), $"{name} did not train");

        (exit, var output, err) = CliHarness.Run("eval", "recall", "--model", Path.Combine(run, "model"), "--data", test, "--json");
        Assert.True(exit == 0, err);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(48, json.GetProperty("answers").GetInt32());
        Assert.Equal(4, json.GetProperty("by_distance").GetArrayLength());
        Assert.Equal(48, json.GetProperty("by_distance").EnumerateArray().Sum(b => b.GetProperty("answers").GetInt32()));

        // LoRA plus a module in full: the merged model is the result; resuming with other modules names the option.
        string run2 = dir.File("run2");
        (exit, _, err) = CliHarness.Run("train", "--model", model, "--data", data, "--train-modules", "lm_head", "--seq-len", "64", "--batch-size", "4",
            "--grad-accum", "1", "--max-steps", "2", "--eval-every", "2", "--out", run2);
        Assert.True(exit == 0, err);
        Assert.True(Directory.Exists(Path.Combine(run2, "adapter")) && File.Exists(Path.Combine(run2, "model", "config.json")));
        (exit, _, err) = CliHarness.Run("train", "--model", model, "--data", data, "--train-modules", "embed_tokens", "--seq-len", "64", "--batch-size", "4",
            "--grad-accum", "1", "--max-steps", "4", "--eval-every", "2", "--out", run2, "--resume");
        Assert.NotEqual(0, exit);
        Assert.Contains("--full / --train-modules", err);
        (exit, _, err) = CliHarness.Run("train", "--model", model, "--data", data, "--train-modules", "no_such_thing", "--seq-len", "64", "--out", dir.File("run3"));
        Assert.Equal(1, exit);
        Assert.Contains("'no_such_thing' matches no parameter", err);
    }
}
