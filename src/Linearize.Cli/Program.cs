using System.CommandLine;
using System.CommandLine.Help;
using Linearize.Cli.Commands;

namespace Linearize.Cli;

public static class Program
{
    /// <summary>Usage errors (unknown options, missing or malformed values) print one line and a hint, and exit 2;
    /// runtime errors exit 1 (<see cref="CliRunner"/>).</summary>
    public static int Main(string[] args)
    {
        var root = BuildRoot();
        var result = root.Parse(args);
        if (result.Errors.Count == 0)
            return result.Invoke();
        var messages = result.Errors.Select(e => string.Join(" ", e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        Console.Error.WriteLine($"error: {string.Join(" ", messages.Distinct())}");
        var path = new List<string>();
        for (var c = result.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            path.Insert(0, c.Command.Name);
        Console.Error.WriteLine($"see '{string.Join(" ", path)} --help'");
        return 2;
    }

    /// <summary>
    /// The command tree. Not a <see cref="RootCommand"/>: that takes its name from the running assembly, which is
    /// <c>Linearize.Cli</c> (the app host is copied to <c>linearize</c>, see the .csproj), and help would print that.
    /// </summary>
    public static Command BuildRoot() => new("linearize", "Load Llama-family checkpoints, convert them to gated linear-recurrent models, train, evaluate, generate and benchmark.")
    {
        new HelpOption(),
        new VersionOption(),
        GenerateCommand.Create(),
        ChatCommand.Create(),
        ServeCommand.Create(),
        EvalCommand.Create(),
        InspectCommand.Create(),
        ConvertCommand.Create(),
        DistillCommand.Create(),
        TrainCommand.Create(),
        MergeCommand.Create(),
        QuantizeCommand.Create(),
        PipelineCommand.Create(),
        ImportLlama2cCommand.Create(),
        ImportLolcatsCommand.Create(),
        ExportCommand.Create(),
        BenchCommand.Create(),
        CreateRandomCommand.Create(),
        DataCommand.Create(),
        LabCommand.Create(),
    };
}
