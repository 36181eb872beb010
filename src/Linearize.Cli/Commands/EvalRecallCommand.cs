using System.CommandLine;
using System.Text.Json;
using Linearize.Data;
using Linearize.Evaluation.Recall;
using Linearize.Methods;
using Linearize.Modeling;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize eval recall</c>: MQAR accuracy overall and by key-to-query distance.</summary>
public static class EvalRecallCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model directory or .bin", Required = true };
        var data = new Option<string>("--data") { Description = "Held-out recall sequences from 'linearize data recall' (another --seed than training)", Required = true };
        var batch = new Option<int>("--batch-size") { Description = "Sequences per forward pass", DefaultValueFactory = _ => 8 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("recall", "Multi-query associative recall accuracy: overall and by distance between a key and its query (≤ 64, 65–128, 129–256, > 256 tokens).");
        command.Add(model);
        command.Add(data);
        command.Add(batch);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            if (r.GetValue(batch) < 1)
                throw new LinearizeException($"--batch-size must be at least 1, got {r.GetValue(batch)}");
            var examples = RecallGenerator.Read(r.GetValue(data)!);
            using var llama = ModelLoader.Load(ModelSource.Resolve(r.GetValue(model)!, null));
            var result = ConsoleUi.WithProgress("sequences", p => RecallEvaluator.Evaluate(llama, examples, r.GetValue(batch), (done, total) => p.Report((done, total))));
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(ToJson(r.GetValue(model)!, result)));
                return 0;
            }

            // The heading goes on its own line: as the table's title it was wrapped to the (narrow) table's width,
            // breaking the model path and the counts mid-phrase.
            Console.Out.WriteLine(Heading(r.GetValue(model)!, result));
            var table = new Table()
                .AddColumn("distance").AddColumn(new TableColumn("answers").RightAligned()).AddColumn(new TableColumn("accuracy").RightAligned());
            foreach (var b in result.Buckets)
                table.AddRow(Markup.Escape(b.Name), b.Count.ToString(), b.Count == 0 ? "–" : $"{b.Accuracy:P1}");
            table.AddRow("all", result.Answers.ToString(), $"{result.Accuracy:P1}");
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }

    public static string Heading(string model, RecallResult r) =>
        $"{model}: {Plural.Of(r.Answers, "answer")} in {Plural.Of(r.Sequences, "sequence")}";

    public static object ToJson(string model, RecallResult r) => new
    {
        model,
        sequences = r.Sequences,
        answers = r.Answers,
        accuracy = Math.Round(r.Accuracy, 4),
        by_distance = r.Buckets.Select(b => new { distance = b.Name, from = b.From, to = b.To == int.MaxValue ? (int?)null : b.To, answers = b.Count, accuracy = b.Count == 0 ? (double?)null : Math.Round(b.Accuracy, 4) }),
    };
}
