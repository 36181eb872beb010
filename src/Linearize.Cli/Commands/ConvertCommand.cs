using System.CommandLine;
using System.Diagnostics;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize convert</c>: teacher → linearized checkpoint directory.</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var conversion = new ConversionCliOptions(methodRequired: true);
        var output = new Option<string>("--out", "-o") { Description = "Output directory", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();

        var command = new Command("convert",
            "Convert a teacher into a linearized model and write a checkpoint directory that generate, eval, inspect, distill and train load directly. " +
            ConversionCliOptions.MethodList);
        model.AddTo(command);
        conversion.AddTo(command);
        command.Add(output);
        command.Add(overwrite);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            conversion.Validate(r);
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true, r.GetValue(model.Model), r.GetValue(model.Tokenizer));
            var watch = Stopwatch.StartNew();
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            if (source.Kind == ModelSourceKind.HuggingFaceDirectory)
            {
                // Streamed: the teacher is never loaded; its weight files are linked (or rewritten tensor by tensor).
                var lin = conversion.Build(r, source.LoadConfig().NumHiddenLayers);
                var result = StreamingConverter.Convert(source.Path, lin, model.ParseDType(r), outDir, source.TokenizerPath);
                string files = result.CopiedFiles == 0 ? $"{Plural.Of(result.LinkedFiles, "weight file")} linked"
                    : result.LinkedFiles == 0 ? $"{Plural.Of(result.CopiedFiles, "weight file")} rewritten"
                    : $"{Plural.Of(result.LinkedFiles, "weight file")} linked, {result.CopiedFiles} rewritten";
                string added = result.AddedTensors > 0 ? $", {Plural.Of(result.AddedTensors, "added tensor")}" : "";
                Console.Out.WriteLine($"wrote {outDir}: {string.Join("; ", result.Mixers)} ({files}{added}; {watch.Elapsed.TotalSeconds:F1} s)");
                return 0;
            }

            // A llama2.c file has no weight files to pass on: load it, convert in memory, write.
            using var teacher = ModelLoader.Load(source, model.ParseDType(r));
            var linearization = conversion.Build(r, teacher.Config.NumHiddenLayers);
            using var student = Converter.ConvertToDirectory(teacher, linearization, outDir, source.TokenizerPath);
            Console.Out.WriteLine($"wrote {outDir}: {string.Join("; ", student.DescribeMixers())} ({watch.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
