using System.CommandLine;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Training.Lora;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize merge</c>: fold a LoRA adapter into its base model.</summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var adapter = new Option<string>("--adapter") { Description = "Adapter directory (adapter_config.json + adapter_model.safetensors), e.g. RUN/adapter", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Output model directory", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("merge", "Merge a LoRA adapter into the base weights and write a plain model directory.");
        model.AddTo(command);
        command.Add(adapter);
        command.Add(output);
        command.Add(overwrite);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true, r.GetValue(model.Model), r.GetValue(model.Tokenizer), r.GetValue(adapter));
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            using var llama = ModelLoader.Load(source, model.ParseDType(r));
            var options = LoraAdapterFile.Load(llama, r.GetValue(adapter)!);
            int merged = LoraInjector.Merge(llama);
            ModelLoader.SaveHuggingFace(llama, llama.Config, outDir, source.TokenizerPath);
            Console.Out.WriteLine($"merged {merged} adapters (rank {options.Rank}, alpha {options.Alpha}) into {outDir}");
            return 0;
        }));
        return command;
    }
}
