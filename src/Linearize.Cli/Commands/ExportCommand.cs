using System.CommandLine;
using Linearize.Checkpoints.Authors;
using Linearize.Checkpoints.Configuration;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize export</c>: a model converted here → the directory the method's authors' code loads.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var format = new Option<string>("--format")
        {
            Description = "liger: config.json with the authors' model_type (liger_gla, liger_hgrn2, liger_gsa, liger_mistral_gla, " +
                          "liger_qwen2_gla, liger_qwen3_gla) + the weights under the teacher's names; lolcats: base/ (a plain Hugging Face " +
                          "model, LoRA merged), distill.pt (feature maps and window factors, torch.save layout) and config.yaml (their attention section)",
            HelpName = "FORMAT",
            Required = true,
        };
        format.AcceptOnlyFromAmong("liger", "lolcats");
        var output = new Option<string>("--out", "-o") { Description = "Output directory", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("export",
            "Write a model converted (and trained) here in the format of the method's authors, so their PyTorch code loads it. " +
            "Their code fixes some constants (Liger: window 65 keys, α = β = 0.5, no softmax layers; LoLCATs: no softmax layers); a model using an option " +
            "their code cannot express is refused, naming the option, rather than written without it (docs/FORMATS.md).");
        model.AddTo(command);
        command.Add(format);
        command.Add(output);
        command.Add(overwrite);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true, r.GetValue(model.Model), r.GetValue(model.Tokenizer));
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            var config = source.LoadConfig();
            bool liger = r.GetValue(format) == "liger";
            // Both refuse what the authors' code cannot express before any weight is read.
            string what = liger ? LigerFormat.ToAuthors(config)["model_type"]!.ToString() : LolcatsFormat.ToYaml(config, "").Split("attention_type: ")[1].Split('\n')[0];
            using var llama = ModelLoader.Load(source, model.ParseDType(r));
            if (liger)
                LigerWriter.Write(llama, outDir, source.TokenizerPath);
            else
                LolcatsFormat.Export(llama, outDir, source.TokenizerPath);
            Console.Out.WriteLine($"wrote {outDir}: {what} ({llama.ParameterCount():N0} parameters)");
            return 0;
        }));
        return command;
    }
}
