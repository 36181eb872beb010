using System.CommandLine;
using Linearize.Evaluation.Passkey;
using Linearize.Modeling;
using Linearize.Tokenization;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize data passkey</c>: passkey retrieval samples for <c>eval passkey</c> (docs/EVALUATION.md §4).</summary>
public static class DataPasskeyCommand
{
    public static Command Create()
    {
        var options = new PasskeyCliOptions();
        var model = new Option<string?>("--model", "-m") { Description = "Model whose tokenizer measures the lengths (the one found next to it; or give --tokenizer)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (tokenizer.json, tokenizer.model or llama2.c tok*.bin) that measures the lengths" };
        var output = new Option<string>("--out", "-o") { Description = "Output .jsonl: one sample per line (length, depth, needle position, prompt and answer as token ids and text)", Required = true };
        var command = new Command("passkey",
            "Write passkey retrieval samples: filler sentences from --text with \"The pass key is N. Remember it. N is the pass key.\" at each --depths, " +
            "then \"What is the pass key? The pass key is\"; the answer is the key. Built in the model's tokens, so each sample is exactly one of --lengths long.");
        options.AddTo(command);
        command.Add(model);
        command.Add(tokenizer);
        command.Add(output);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var o = options.Parse(r);
            string path = r.GetValue(output)!;
            if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                throw new LinearizeException($"{path}: --out must end in .jsonl");
            string? tokenizerPath = r.GetValue(tokenizer);
            string? modelPath = r.GetValue(model);
            if (tokenizerPath is null && modelPath is null)
                throw new LinearizeException("give --model or --tokenizer: lengths are counted in the model's tokens");
            string? resolved = tokenizerPath ?? ModelSource.Resolve(modelPath!).TokenizerPath
                ?? throw new LinearizeException($"{modelPath}: no tokenizer found next to the model; give --tokenizer");
            foreach (var input in new[] { options.TextPath(r), resolved, modelPath })
                if (input is not null && Path.GetFullPath(input) == Path.GetFullPath(path))
                    throw new LinearizeException($"{path}: --out is one of the inputs; it would be overwritten");

            var generator = new PasskeyGenerator(TokenizerLoader.Load(resolved), options.ReadText(r));
            var samples = generator.Generate(o);
            PasskeyFile.Write(path, samples);
            Console.Error.WriteLine($"wrote {path}: {Plural.Of(samples.Count, "sample")} ({o.Lengths.Count} × {o.Depths.Count} cells of {o.SamplesPerCell}; " +
                                    $"lengths {string.Join(", ", o.Lengths)} tokens; {o.Digits}-digit keys, answer {samples[0].AnswerIds.Length} tokens)");
            return 0;
        }));
        return command;
    }
}
