using System.CommandLine;
using System.CommandLine.Help;
using Linearize.Cli.Commands;

namespace Linearize.Cli;

public static class Program
{
    public static int Main(string[] args) => BuildRoot().Parse(args).Invoke();

    /// <summary>
    /// The command tree. Not a <see cref="RootCommand"/>: that takes its name from the running assembly, which is
    /// <c>Linearize.Cli</c> (the app host is copied to <c>linearize</c>, see the .csproj), and help would print that.
    /// </summary>
    public static Command BuildRoot() => new("linearize", "Load Llama-family checkpoints, convert them to gated linear-recurrent models, train, evaluate, generate and benchmark.")
    {
        new HelpOption(),
        new VersionOption(),
        GenerateCommand.Create(),
        EvalCommand.Create(),
        InspectCommand.Create(),
        ConvertCommand.Create(),
        DistillCommand.Create(),
        TrainCommand.Create(),
        MergeCommand.Create(),
        PipelineCommand.Create(),
        ImportLlama2cCommand.Create(),
        BenchCommand.Create(),
        CreateRandomCommand.Create(),
    };
}
