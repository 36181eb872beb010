using System.CommandLine;

namespace Linearize.Cli;

/// <summary>The model options of the benchmarks that compare several models in one table (<c>bench decode</c>,
/// <c>bench prefill</c>).</summary>
public static class BenchModelOptions
{
    public static Option<string[]> Models() => new("--model", "-m")
    {
        Description = "Model(s) to measure; repeat --model to compare (e.g. a teacher and its conversion) in one table and plot",
        Required = true,
        AllowMultipleArgumentsPerToken = true,
    };

    public static Option<string?> Tokenizer() => new("--tokenizer") { Description = "Tokenizer file (only needed to resolve a llama2.c directory)" };

    /// <summary>A short name for a model path in tables: its file or directory name.</summary>
    public static string Name(string path) => Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
}
