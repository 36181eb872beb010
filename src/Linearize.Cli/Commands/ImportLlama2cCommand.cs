using System.CommandLine;
using Linearize.Checkpoints;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize import-llama2c</c>: llama2.c .bin → Hugging Face directory.</summary>
public static class ImportLlama2cCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "llama2.c .bin checkpoint (legacy v0 format)", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Its tok*.bin tokenizer, copied into the output" };
        var output = new Option<string>("--out", "-o") { Description = "Output directory (config.json + model.safetensors)", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("import-llama2c",
            "Convert a llama2.c checkpoint to a Hugging Face directory (q/k rows permuted from interleaved RoPE to rotate_half).");
        command.Add(checkpoint);
        command.Add(tokenizer);
        command.Add(output);
        command.Add(overwrite);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string bin = r.GetValue(checkpoint)!;
            string? tok = r.GetValue(tokenizer);
            string outDir = r.GetValue(output)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true, bin, tok);
            if (tok is not null)
                Tokenization.Llama2cTokenizer.Load(tok); // validate before writing anything
            var file = new Llama2cTensorSource(bin);
            using var model = new LlamaForCausalLM(file.Config);
            StateDictLoader.Load(model, file, model.IgnorableCheckpointKeys);
            ModelLoader.SaveHuggingFace(model, file.Config, outDir, tok);
            Console.Out.WriteLine($"wrote {outDir} ({model.ParameterCount():N0} parameters)");
            return 0;
        }));
        return command;
    }
}
