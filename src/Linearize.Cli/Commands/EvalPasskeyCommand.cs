using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Linearize.Evaluation.Passkey;
using Linearize.Generation;
using Linearize.Methods;
using Linearize.Modeling;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize eval passkey</c>: exact-match passkey retrieval by length × depth (docs/EVALUATION.md §4).</summary>
public static class EvalPasskeyCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var engineOptions = new EngineCliOptions();
        var make = new PasskeyCliOptions();
        var data = new Option<string?>("--data") { Description = "Samples from 'linearize data passkey' (made with this model's tokenizer); without it they are made here from --lengths, --depths, … --text" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (every cell, the margins and each sample's output) instead of a table" };
        var plot = new Option<string?>("--plot") { Description = "Also write a PNG heat map of accuracy: depth across, length up" };
        var command = new Command("passkey",
            "Passkey retrieval: the model reads filler with a pass key hidden at some depth, then \"What is the pass key? The pass key is\"; it is right when its greedy " +
            "continuation is the key's tokens exactly. Accuracy by length × depth. Lengths past max_position_embeddings are refused for a model with softmax layers.");
        model.AddTo(command);
        engineOptions.AddTo(command);
        command.Add(data);
        make.AddTo(command);
        command.Add(json);
        command.Add(plot);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string? dataPath = r.GetValue(data);
            if (dataPath is not null && make.FirstGiven(r) is string flag)
                throw new LinearizeException($"{flag} only applies without --data (the file fixes the samples)");
            string? png = r.GetValue(plot);
            if (png is not null)
            {
                if (!png.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                    throw new LinearizeException($"{png}: --plot must end in .png");
                foreach (var input in new[] { dataPath, r.GetValue(make.Text) })
                    if (input is not null && Path.GetFullPath(input) == Path.GetFullPath(png))
                        throw new LinearizeException($"{png}: --plot is one of the inputs; it would be overwritten");
            }

            string modelPath = r.GetValue(model.Model)!;
            var source = ModelSource.Resolve(modelPath, r.GetValue(model.Tokenizer));
            var config = source.LoadConfig();
            List<PasskeySample>? samples = null;
            PasskeyOptions? options = null;
            if (dataPath is not null)
            {
                samples = PasskeyFile.Read(dataPath);
                ContextLimit.Check(config, samples.Max(s => s.Length), $"{dataPath}: length");
            }
            else
            {
                options = make.Parse(r);
                ContextLimit.Check(config, options.Lengths.Max(), "--lengths");
            }

            var tokenizer = ModelLoader.LoadTokenizer(source, config);
            if (samples is not null)
                PasskeyEvaluator.CheckTokenizer(samples, tokenizer, config.VocabSize, dataPath!);
            else
                samples = new PasskeyGenerator(tokenizer, make.ReadText(r)).Generate(options!);

            // The engine is packed straight from the files; the TorchSharp model is loaded only for --engine torch.
            using var engine = engineOptions.Load(r, source);
            using var llama = engine is null ? ModelLoader.Load(source, model.ParseDType(r)) : null;
            using var sampler = new Sampler(SamplingOptions.Greedy);
            Func<int[], int, int[]> greedy = engine is null
                ? (prompt, n) => new Generator(llama!).Generate(prompt, n, sampler).ToArray()
                : (prompt, n) => new EngineGenerator(engine).Generate(prompt, n, sampler).ToArray();
            var result = ConsoleUi.WithProgress("passkey samples", p => PasskeyEvaluator.Evaluate(samples, greedy, p));

            if (png is not null)
                PasskeyHeatmap.Write(png, $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath))}: passkey retrieval", result);
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(ToJson(modelPath, dataPath, options is null ? null : make.TextPath(r), options, result, tokenizer)));
                return 0;
            }

            Console.Out.WriteLine($"{modelPath}: passkey exact match, {Plural.Of(result.All.Samples, "sample")} " +
                                  $"({samples[0].Passkey.Length}-digit keys, answered in {Plural.Of(samples[0].AnswerIds.Length, "token")})");
            var table = new Table().AddColumn("length \\ depth");
            foreach (double d in result.Depths)
                table.AddColumn(new TableColumn(Depth(d)).RightAligned());
            table.AddColumn(new TableColumn("all").RightAligned());
            foreach (var (length, row) in result.Lengths.Zip(result.ByLength))
                table.AddRow(result.Depths.Select(d => Cell(result.Cell(length, d))).Prepend(length.ToString(CultureInfo.InvariantCulture)).Append(Cell(row)).ToArray());
            table.AddRow(result.ByDepth.Select(Cell).Prepend("all").Append(Cell(result.All)).ToArray());
            ConsoleUi.Out.Write(table);
            var common = result.Outcomes.GroupBy(o => tokenizer.Decode(o.Generated)).OrderByDescending(g => g.Count()).Take(3)
                .Select(g => $"{JsonSerializer.Serialize(g.Key)} × {g.Count()}");
            Console.Out.WriteLine($"most frequent answers: {string.Join(", ", common)}");
            return 0;
        }));
        return command;
    }

    private static string Depth(double d) => d.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Cell(PasskeyCell c) => c.Samples == 0 ? "–" : $"{c.Accuracy * 100:F0}% ({c.Correct}/{c.Samples})";

    public static object ToJson(string model, string? data, string? text, PasskeyOptions? options, PasskeyResult r, Linearize.Tokenization.TextTokenizer tokenizer) => new
    {
        model,
        data,
        text,
        seed = options?.Seed,
        samples = r.All.Samples,
        correct = r.All.Correct,
        accuracy = Math.Round(r.All.Accuracy, 4),
        lengths = r.Lengths,
        depths = r.Depths,
        cells = r.Cells.Select(c => new { length = c.Length, depth = c.Depth, samples = c.Samples, correct = c.Correct, accuracy = c.Samples == 0 ? (double?)null : Math.Round(c.Accuracy, 4) }),
        by_length = r.ByLength.Select(c => new { length = c.Length, samples = c.Samples, correct = c.Correct, accuracy = Math.Round(c.Accuracy, 4) }),
        by_depth = r.ByDepth.Select(c => new { depth = c.Depth, samples = c.Samples, correct = c.Correct, accuracy = Math.Round(c.Accuracy, 4) }),
        outputs = r.Outcomes.Select(o => new
        {
            length = o.Sample.Length, depth = o.Sample.Depth, index = o.Sample.Index, passkey = o.Sample.Passkey,
            needle_position = o.Sample.NeedlePosition, output = tokenizer.Decode(o.Generated), correct = o.Correct,
        }),
    };
}
