using System.CommandLine;
using Linearize.Cli.Commands;

namespace Linearize.Cli;

public static class Program
{
    public static int Main(string[] args) => BuildRoot().Parse(args).Invoke();

    public static RootCommand BuildRoot() => new("linearize — load Llama-family checkpoints, convert them to gated linear-recurrent models, evaluate, generate and benchmark.")
    {
        GenerateCommand.Create(),
        EvalCommand.Create(),
        InspectCommand.Create(),
        ConvertCommand.Create(),
        TrainCommand.Create(),
        MergeCommand.Create(),
        PipelineCommand.Create(),
        ImportLlama2cCommand.Create(),
        BenchCommand.Create(),
        CreateRandomCommand.Create(),
    };
}
