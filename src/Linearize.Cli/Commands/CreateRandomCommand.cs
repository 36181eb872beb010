using System.CommandLine;
using Linearize.Checkpoints;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;

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
        var dtype = new Option<string>("--dtype")
        {
            Description = "Element type of the written weights (hf only; llama2c files are float32). bfloat16 is drawn in float32 and rounded tensor by tensor, so no float32 copy of the model is ever held",
            DefaultValueFactory = _ => "float32",
        };
        dtype.AcceptOnlyFromAmong("float32", "bfloat16");
        var shardSize = new Option<int>("--shard-size-mib")
        {
            Description = "Split hf weights into model-0000i-of-0000n.safetensors shards of at most this many MiB (Hugging Face's default: 5 GB)",
            DefaultValueFactory = _ => 5 * 1024,
        };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("create-random", "Write a random-weight Hugging Face checkpoint with the shape of a real model (speed does not depend on training).");
        command.Add(preset);
        command.Add(output);
        command.Add(seed);
        command.Add(tokenizer);
        command.Add(format);
        command.Add(context);
        command.Add(vocab);
        command.Add(dtype);
        command.Add(shardSize);
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
            if (r.GetValue(shardSize) < 1)
                throw new LinearizeException($"--shard-size-mib must be at least 1, got {r.GetValue(shardSize)}");
            bool bf16 = r.GetValue(dtype) == "bfloat16";
            if (llama2c)
            {
                if (bf16)
                    throw new LinearizeException("--dtype bfloat16 applies to --format hf (llama2.c files hold float32)");
                using var model = new LlamaForCausalLM(config);
                RandomWeights.Initialize(model, r.GetValue(seed));
                Llama2cWriter.Write(model, outPath);
                Console.Out.WriteLine($"wrote {outPath} ({model.ParameterCount():N0} parameters)");
                return 0;
            }

            // Streamed: one tensor drawn, rounded and written at a time, so the largest shape fits in memory however
            // large the model (the same weights Initialize gives a model built in memory).
            var type = bf16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
            var entries = RandomWeights.Entries(config, r.GetValue(seed), type);
            long parameters = entries.Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b));
            ConsoleUi.WithProgress("create-random", progress =>
            {
                int done = 0;
                var counted = entries.Select(e => e with
                {
                    Produce = () =>
                    {
                        var t = e.Produce();
                        progress.Report((++done, entries.Count));
                        return t;
                    },
                }).ToList();
                StagedDirectory.Write(outPath, staging =>
                {
                    SafetensorsWriter.WriteCheckpoint(staging, counted, (long)r.GetValue(shardSize) << 20);
                    config.With(j => j["torch_dtype"] = bf16 ? "bfloat16" : "float32").Save(Path.Combine(staging, "config.json"));
                    ModelLoader.CopyTokenizer(r.GetValue(tokenizer), staging);
                });
                return 0;
            });
            Console.Out.WriteLine($"wrote {outPath} ({parameters:N0} parameters, {r.GetValue(dtype)})");
            return 0;
        }));
        return command;
    }
}
