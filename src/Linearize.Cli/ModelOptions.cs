using System.CommandLine;
using static TorchSharp.torch;

namespace Linearize.Cli;

/// <summary>The options every command that loads a model shares.</summary>
public sealed class ModelOptions
{
    public Option<string> Model { get; } = new("--model", "-m")
    {
        Description = "Model: a Hugging Face directory (config.json + safetensors; the Liger authors' liger_* directories too), a llama2.c .bin, or a directory holding one .bin and its tok*.bin",
        Required = true,
    };

    public Option<string?> Tokenizer { get; } = new("--tokenizer")
    {
        Description = "Tokenizer file (tokenizer.json, tokenizer.model or llama2.c tok*.bin); default: the one found next to the model",
    };

    public Option<string> DType { get; } = new("--dtype")
    {
        Description = "Weight dtype for computation: float32 or bfloat16",
        DefaultValueFactory = _ => "float32",
    };

    public ModelOptions()
    {
        DType.AcceptOnlyFromAmong("float32", "bfloat16");
    }

    public void AddTo(Command command)
    {
        command.Add(Model);
        command.Add(Tokenizer);
        command.Add(DType);
    }

    public ScalarType ParseDType(ParseResult r) => r.GetValue(DType) == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
}
