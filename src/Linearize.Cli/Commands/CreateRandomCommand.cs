using System.CommandLine;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize create-random</c>: a random-weight checkpoint with a real model's shape, for benchmarks.</summary>
public static class CreateRandomCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = $"Shape to copy: {string.Join(", ", ModelPresets.All.Keys)}", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Output directory", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 0UL };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file to copy into the directory (optional)" };
        var format = new Option<string>("--format") { Description = "hf (a Hugging Face directory) or llama2c (one .bin file that llama2.c's run.c reads too)", DefaultValueFactory = _ => "hf" };
        format.AcceptOnlyFromAmong("hf", "llama2c");
        var context = new Option<int?>("--max-positions") { Description = "Override the preset's context length (max_position_embeddings / llama2.c seq_len)" };
        var vocab = new Option<int?>("--vocab-size") { Description = "Override the preset's vocabulary (e.g. a synthetic task's, from 'data recall')" };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("create-random", "Write a random-weight Hugging Face checkpoint with the shape of a real model (speed does not depend on training).");
        command.Add(preset);
        command.Add(output);
        command.Add(seed);
        command.Add(tokenizer);
        command.Add(format);
        command.Add(context);
        command.Add(vocab);
        command.Add(overwrite);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var config = ModelPresets.Get(r.GetValue(preset)!);
            if (r.GetValue(context) is int positions)
                config = positions > 0
                    ? config.With(j => j["max_position_embeddings"] = positions)
                    : throw new LinearizeException($"--max-positions must be positive, got {positions}");
            if (r.GetValue(vocab) is int v)
                config = v > 0
                    ? config.With(j => j["vocab_size"] = v)
                    : throw new LinearizeException($"--vocab-size must be positive, got {v}");
            string outPath = r.GetValue(output)!;
            bool llama2c = r.GetValue(format) == "llama2c";
            if (!llama2c)
                OutputDirectory.Prepare(outPath, r.GetValue(overwrite), reuse: false, replacedWhole: true, r.GetValue(tokenizer));
            if (llama2c && Directory.Exists(outPath))
                throw new LinearizeException($"{outPath}: is a directory; with --format llama2c, --out names the .bin file");
            using var model = new LlamaForCausalLM(config);
            RandomWeights.Initialize(model, r.GetValue(seed));
            if (llama2c)
                Linearize.Interchange.Llama2cWriter.Write(model, outPath);
            else
                ModelLoader.SaveHuggingFace(model, config, outPath, r.GetValue(tokenizer));
            Console.Out.WriteLine($"wrote {outPath} ({model.ParameterCount():N0} parameters)");
            return 0;
        }));
        return command;
    }
}
