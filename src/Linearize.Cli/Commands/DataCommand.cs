using System.CommandLine;
using Linearize.Data;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize data …</c>: synthetic datasets.</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var command = new Command("data", "Make synthetic datasets.");
        command.Add(CreateRecall());
        command.Add(DataPasskeyCommand.Create());
        return command;
    }

    /// <summary>The task options shared by <c>data recall</c> and <c>lab recall</c>.</summary>
    public sealed class RecallTaskCliOptions
    {
        public Option<int> Keys { get; } = new("--keys") { Description = "Distinct key tokens", DefaultValueFactory = _ => new RecallTaskOptions().Keys };
        public Option<int> Values { get; } = new("--values") { Description = "Distinct value tokens (chance accuracy is 1/values)", DefaultValueFactory = _ => new RecallTaskOptions().Values };
        public Option<int> Pairs { get; } = new("--pairs") { Description = "Key-value pairs stated at the start of each sequence", DefaultValueFactory = _ => new RecallTaskOptions().Pairs };
        public Option<int> Queries { get; } = new("--queries") { Description = "Queries per sequence (answers scored)", DefaultValueFactory = _ => new RecallTaskOptions().Queries };
        public Option<int> SeqLen { get; } = new("--seq-len") { Description = "Tokens per sequence", DefaultValueFactory = _ => new RecallTaskOptions().SequenceLength };
        public Option<int> MinGap { get; } = new("--min-gap") { Description = "Filler tokens between the pairs and the first possible query (pushes distances past a window)", DefaultValueFactory = _ => new RecallTaskOptions().MinGap };

        public void AddTo(Command c)
        {
            foreach (var o in new Option[] { Keys, Values, Pairs, Queries, SeqLen, MinGap })
                c.Add(o);
        }

        public RecallTaskOptions Parse(ParseResult r)
        {
            var o = new RecallTaskOptions
            {
                Keys = r.GetValue(Keys), Values = r.GetValue(Values), Pairs = r.GetValue(Pairs), Queries = r.GetValue(Queries),
                SequenceLength = r.GetValue(SeqLen), MinGap = r.GetValue(MinGap),
            };
            o.Validate();
            return o;
        }
    }

    private static Command CreateRecall()
    {
        var task = new RecallTaskCliOptions();
        var count = new Option<int>("--count", "-n") { Description = "Sequences to write", DefaultValueFactory = _ => 1000 };
        var seed = new Option<int>("--seed") { Description = "Random seed (use different seeds for training and held-out files)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out", "-o") { Description = "Output .jsonl (input_ids, labels, distances per line; train reads it directly)", Required = true };
        var command = new Command("recall",
            "Write multi-query associative recall (MQAR) sequences: key-value pairs first, then queries (a key, then its value) scattered over the rest; " +
            "labels only on the answers. Token ids: 0 filler, 1..keys keys, then values. Also writes FILE.task.json with the options.");
        task.AddTo(command);
        command.Add(count);
        command.Add(seed);
        command.Add(output);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var o = task.Parse(r);
            int n = r.GetValue(count);
            if (n < 1)
                throw new LinearizeException($"--count must be at least 1, got {n}");
            string path = r.GetValue(output)!;
            if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                throw new LinearizeException($"{path}: --out must end in .jsonl (the format train recognizes)");
            var examples = RecallGenerator.Generate(o, n, r.GetValue(seed));
            RecallGenerator.Write(path, examples, o);
            var d = examples.SelectMany(e => e.Distances).ToArray();
            Console.Error.WriteLine($"wrote {path}: {Plural.Of(n, "sequence")} of {o.SequenceLength} tokens, {d.Length} answers " +
                                    $"(distance min {d.Min()}, median {d.Order().ElementAt(d.Length / 2)}, max {d.Max()}; {d.Count(x => x > 64) * 100.0 / d.Length:F0} % beyond 64); vocabulary {o.VocabularySize}");
            return 0;
        }));
        return command;
    }
}
