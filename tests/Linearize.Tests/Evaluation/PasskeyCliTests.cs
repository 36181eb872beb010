using System.Text.Json;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Evaluation;

/// <summary>
/// <c>data passkey</c> and <c>eval passkey</c> through the CLI on tiny seeded random models with stories260K's
/// tokenizer and 128 positions: a softmax teacher, and its Liger-GLA conversion (fully linear).
/// </summary>
[Collection("Torch")]
public sealed class PasskeyCliTests : IClassFixture<PasskeyCliTests.Models>
{
    private readonly Models _models;

    public PasskeyCliTests(Models models) => _models = models;

    public sealed class Models : IDisposable
    {
        private readonly TempDir _dir = new();

        public Models()
        {
            Teacher = _dir.File("teacher");
            Linear = _dir.File("gla");
            string tok = Path.Combine(SampleData.Stories260KDir, "tok512.bin");
            var (exit, _, err) = CliHarness.Run("create-random", "--preset", "stories260k", "--max-positions", "128", "--seed", "3", "--tokenizer", tok, "--out", Teacher);
            Assert.True(exit == 0, err);
            (exit, _, err) = CliHarness.Run("convert", "--model", Teacher, "--method", "liger-gla", "--window", "16", "--out", Linear);
            Assert.True(exit == 0, err);
        }

        public string Teacher { get; }

        public string Linear { get; }

        public string File(string name) => _dir.File(name);

        public void Dispose() => _dir.Dispose();
    }

    private static string OneError(string err)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        return lines[0];
    }

    [Fact]
    public void DataThenEvalJsonRoundTrips()
    {
        string data = _models.File("round.jsonl"), png = _models.File("round.png");
        var (exit, _, err) = CliHarness.Run("data", "passkey", "--model", _models.Teacher, "--lengths", "96,128", "--depths", "0,0.5,1",
            "--samples-per-cell", "2", "--seed", "4", "--out", data);
        Assert.True(exit == 0, err);
        Assert.Contains("12 samples", err);
        Assert.Equal(12, File.ReadAllLines(data).Length);

        (exit, var output, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--data", data, "--json", "--plot", png, "--threads", "1");
        Assert.True(exit == 0, err);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(12, json.GetProperty("samples").GetInt32());
        Assert.Equal(new[] { 96, 128 }, json.GetProperty("lengths").EnumerateArray().Select(x => x.GetInt32()));
        Assert.Equal(new[] { 0.0, 0.5, 1.0 }, json.GetProperty("depths").EnumerateArray().Select(x => x.GetDouble()));
        var cells = json.GetProperty("cells").EnumerateArray().ToList();
        Assert.Equal(6, cells.Count);
        Assert.All(cells, c => Assert.Equal(2, c.GetProperty("samples").GetInt32()));
        var outputs = json.GetProperty("outputs").EnumerateArray().ToList();
        Assert.Equal(12, outputs.Count);
        // The score is the outputs' exact matches: a random model says anything but the key.
        Assert.Equal(outputs.Count(o => o.GetProperty("correct").GetBoolean()), json.GetProperty("correct").GetInt32());
        Assert.All(outputs, o => Assert.Equal(o.GetProperty("output").GetString()!.Trim() == o.GetProperty("passkey").GetString(), o.GetProperty("correct").GetBoolean()));
        Assert.True(new FileInfo(png).Length > 1000);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(png)!, "*.tmp*"));

        // The same samples made on the fly give the same answers.
        (exit, output, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--lengths", "96,128", "--depths", "0,0.5,1",
            "--samples-per-cell", "2", "--seed", "4", "--json");
        Assert.True(exit == 0, err);
        Assert.Equal(outputs.Select(o => o.GetProperty("output").GetString()),
            JsonDocument.Parse(output).RootElement.GetProperty("outputs").EnumerateArray().Select(o => o.GetProperty("output").GetString()));
        (exit, output, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--data", data);
        Assert.True(exit == 0, err);
        // (The table itself goes through Spectre's console, bound to the stdout of the first command a test run made.)
        Assert.Contains("passkey exact match, 12 samples (5-digit keys, answered in 6 tokens)", output);
        Assert.Contains("most frequent answers:", output);
    }

    [Fact]
    public void ASoftmaxModelRefusesLengthsPastItsPositions()
    {
        var (exit, _, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--lengths", "96,200", "--samples-per-cell", "1");
        Assert.Equal(1, exit);
        Assert.Contains("--lengths = 200 exceeds the model's context of 128 positions (it has softmax attention layers)", OneError(err));

        string data = _models.File("long.jsonl");
        Assert.Equal(0, CliHarness.Run("data", "passkey", "--model", _models.Teacher, "--lengths", "200", "--depths", "0.5", "--samples-per-cell", "1", "--out", data).Exit);
        (exit, _, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--data", data);
        Assert.Equal(1, exit);
        Assert.Contains($"{data}: length = 200 exceeds the model's context of 128 positions", OneError(err));
    }

    [Fact]
    public void ALinearModelRunsPastTheTeachersPositions()
    {
        var (exit, output, err) = CliHarness.Run("eval", "passkey", "--model", _models.Linear, "--lengths", "200", "--depths", "0,1", "--samples-per-cell", "1", "--json");
        Assert.True(exit == 0, err);
        Assert.Contains("note: --lengths = 200 goes beyond the teacher's 128 positions", err);
        Assert.Equal(2, JsonDocument.Parse(output).RootElement.GetProperty("samples").GetInt32());
    }

    [Fact]
    public void MisusedOptionsAreOneLineErrors()
    {
        string data = _models.File("misuse.jsonl");
        Assert.Equal(0, CliHarness.Run("data", "passkey", "--model", _models.Teacher, "--lengths", "96", "--depths", "0", "--samples-per-cell", "1", "--out", data).Exit);
        var (exit, _, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--data", data, "--depths", "0.5");
        Assert.Equal(1, exit);
        Assert.Contains("--depths only applies without --data", OneError(err));

        string text = _models.File("filler.txt");
        File.WriteAllText(text, "One sentence. Another one!\nA third?\n");
        (exit, _, err) = CliHarness.Run("data", "passkey", "--model", _models.Teacher, "--text", text, "--out", text + ".jsonl");
        Assert.True(exit == 0, err);
        (exit, _, err) = CliHarness.Run("data", "passkey", "--tokenizer", Path.Combine(SampleData.Stories260KDir, "tok512.bin"), "--text", data, "--out", data);
        Assert.Equal(1, exit);
        Assert.Contains("--out is one of the inputs", OneError(err));
        (exit, _, err) = CliHarness.Run("data", "passkey", "--out", _models.File("x.jsonl"));
        Assert.Equal(1, exit);
        Assert.Contains("give --model or --tokenizer", OneError(err));
        (exit, _, err) = CliHarness.Run("data", "passkey", "--model", _models.Teacher, "--lengths", "96,x", "--out", _models.File("y.jsonl"));
        Assert.Equal(1, exit);
        Assert.Contains("--lengths: 'x' is not a number", OneError(err));
        (exit, _, err) = CliHarness.Run("eval", "passkey", "--model", _models.Teacher, "--data", data, "--plot", data);
        Assert.Equal(1, exit);
        Assert.Contains("--plot must end in .png", OneError(err));
        Assert.False(File.Exists(_models.File("y.jsonl")));
    }
}
