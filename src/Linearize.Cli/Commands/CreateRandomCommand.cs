using System.CommandLine;
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
        var command = new Command("create-random", "Write a random-weight Hugging Face checkpoint with the shape of a real model (speed does not depend on training).");
        command.Add(preset);
        command.Add(output);
        command.Add(seed);
        command.Add(tokenizer);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var config = ModelPresets.Get(r.GetValue(preset)!);
            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir))
                throw new LinearizeException($"{outDir}: exists and is a file; --out must be a directory");
            using var model = new LlamaForCausalLM(config);
            RandomWeights.Initialize(model, r.GetValue(seed));
            ModelLoader.SaveHuggingFace(model, config, outDir, r.GetValue(tokenizer));
            Console.Error.WriteLine($"wrote {outDir} ({model.ParameterCount():N0} parameters)");
            return 0;
        }));
        return command;
    }
}
