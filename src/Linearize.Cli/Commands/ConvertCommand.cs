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
            using var teacher = ModelLoader.Load(source, model.ParseDType(r));
            int layers = teacher.Config.NumHiddenLayers;
            var lin = conversion.Build(r, layers);
            using var student = Converter.ConvertToDirectory(teacher, lin, outDir, source.TokenizerPath);
            var mixers = student.Model.Layers.Select(l => l.SelfAttention.Describe()).GroupBy(x => x)
                .Select(g => $"{g.Key} × {g.Count()}");
            Console.Out.WriteLine($"wrote {outDir}: {string.Join("; ", mixers)} ({watch.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
