using System.CommandLine;
using Linearize.Generation;
using Linearize.Methods;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize generate</c>: streams the prompt and its continuation to stdout.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var engineOptions = new EngineCliOptions();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to continue", Required = true };
        var maxNew = new Option<int>("--max-new-tokens", "-n") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 128 };
        var temperature = new Option<double>("--temperature", "-t") { Description = "0 = greedy (deterministic); higher = more random", DefaultValueFactory = _ => 0.0 };
        var topK = new Option<int>("--top-k") { Description = "Sample only among the K most likely tokens (0 = all)", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling: smallest set of tokens whose probability reaches P", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed for sampling", DefaultValueFactory = _ => 0UL };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not prepend the BOS token" };

        var command = new Command("generate", "Generate text from a prompt, streaming it to stdout: the decode engine prefills the prompt and produces each new token (--engine torch: the TorchSharp model throughout, the reference).");
        model.AddTo(command);
        engineOptions.AddTo(command);
        command.Add(prompt);
        command.Add(maxNew);
        command.Add(temperature);
        command.Add(topK);
        command.Add(topP);
        command.Add(seed);
        command.Add(noBos);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string text = r.GetValue(prompt)!;
            int n = r.GetValue(maxNew);
            if (n < 1)
                throw new LinearizeException($"--max-new-tokens must be at least 1, got {n}");
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(topP), r.GetValue(seed));
            options.Validate();

            // On the engine the weights are packed straight from the files: no TorchSharp model is held beside them.
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            var config = source.LoadConfig();
            var tokenizer = ModelLoader.LoadTokenizer(source, config);
            using var llama = engineOptions.UseEngine(r) ? null : ModelLoader.Load(source, model.ParseDType(r));
            var ids = tokenizer.Encode(text, addBos: !r.GetValue(noBos));
            if (ids.Count == 0)
                throw new LinearizeException("the prompt is empty and --no-bos leaves nothing to condition on; give a --prompt or allow BOS");
            if (text.Length == 0 && tokenizer.BosId is null)
                throw new LinearizeException("the prompt is empty and this tokenizer has no BOS token");
            ContextLimit.Check(config, ids.Count + n, $"prompt ({ids.Count} tokens) + --max-new-tokens ({n})");

            // Loaded before anything is printed: a model that fails to load leaves stdout empty, not a prompt and an error.
            using var engine = engineOptions.Load(r, source);
            var detok = tokenizer.CreateStreamingDetokenizer();
            var stdout = Console.Out;
            foreach (int id in ids)
                stdout.Write(detok.Push(id));
            stdout.Flush();
            var stops = new HashSet<int>(config.EosTokenIds);
            if (tokenizer.EosId is int eos)
                stops.Add(eos);
            using var sampler = new Sampler(options);
            var tokens = engine is null
                ? new Generator(llama!).Generate(ids, n, sampler, stops)
                : new EngineGenerator(engine).Generate(ids, n, sampler, stops);
            foreach (int id in tokens)
            {
                stdout.Write(detok.Push(id));
                stdout.Flush();
            }

            stdout.Write(detok.Flush());
            stdout.WriteLine();
            return 0;
        }));
        return command;
    }
}
