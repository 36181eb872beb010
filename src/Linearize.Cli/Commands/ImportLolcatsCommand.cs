using System.CommandLine;
using Linearize.Checkpoints.Authors;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize import-lolcats</c>: the LoLCATs authors' base model + attention-transfer .pt + LoRA .pt + YAML
/// configs → one model directory.</summary>
public static class ImportLolcatsCommand
{
    public static Command Create()
    {
        var baseModel = new Option<string>("--base") { Description = "The base model their checkpoints were trained from (a Hugging Face directory)", Required = true };
        var attn = new Option<string>("--attn") { Description = "Attention-transfer checkpoint (.pt): feature_map_{q,k}.mlp.layer and window_factors per layer", Required = true };
        var peft = new Option<string?>("--peft") { Description = "LoRA checkpoint (.pt) from their fine-tuning stage: lora_A / lora_B, merged into the projections" };
        var config = new Option<string[]>("--config")
        {
            Description = "Their YAML config(s): the model config (its 'attention' section names the layer) and, with --peft, the " +
                          "experiment config (its 'finetune.kwargs' gives r and lora_alpha). Repeat or pass both in one file.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file; default: the one found next to --base" };
        var output = new Option<string>("--out", "-o") { Description = "Output directory (config.json + model.safetensors)", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();
        var command = new Command("import-lolcats",
            "Turn the LoLCATs authors' checkpoints into one model directory that every --model command loads: the base is converted " +
            "with the attention their config names (lolcats_llama_window_sw → lolcats-sw, lolcats_llama_window_tk → lolcats-tk), the " +
            "attention tensors are copied by name, and the LoRA is merged (W += lora_alpha / r · B A). .pt files are read without " +
            "running pickled code: only tensors and plain containers, anything else is refused.");
        foreach (var o in new Option[] { baseModel, attn, peft, config, tokenizer, output, overwrite })
            command.Add(o);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            var configs = r.GetValue(config)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true,
                new[] { r.GetValue(baseModel), r.GetValue(attn), r.GetValue(peft), r.GetValue(tokenizer) }.Concat(configs).ToArray());
            var source = ModelSource.Resolve(r.GetValue(baseModel)!, r.GetValue(tokenizer));
            var (lin, alpha, rank) = LolcatsFormat.ReadConfig(configs, source.LoadConfig());
            using var teacher = ModelLoader.Load(source);
            using var model = LolcatsFormat.Import(teacher, lin, r.GetValue(attn)!, r.GetValue(peft), alpha, rank);
            ModelLoader.SaveHuggingFace(model, model.Config, outDir, source.TokenizerPath);
            Console.Out.WriteLine($"wrote {outDir}: {model.Model.Layers[0].SelfAttention.Describe()} × {model.Config.NumHiddenLayers}" +
                                  (r.GetValue(peft) is null ? "" : $", LoRA merged (α {alpha}, r {rank})"));
            return 0;
        }));
        return command;
    }
}
