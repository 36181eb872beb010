using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Linearize.Methods;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize quantize</c>: a model directory → a q8 engine checkpoint the engine maps in place.</summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var output = new Option<string>("--out", "-o") { Description = "Output directory", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("quantize",
            "Write a model directory (a teacher or a converted model) as a q8 engine checkpoint: every matrix the engine multiplies is stored " +
            "as 8-bit blocks of 32 with a float32 scale each (llama.cpp's Q8_0 rule, bit for bit what --weight-dtype q8 builds at load), " +
            "the rest as it is. generate, chat, serve, bench and eval then map it in place and run it as q8 without quantizing at start-up " +
            "(~3.6x fewer bytes than float32). Only the engine runs it: train, convert and --engine torch need the model it came from.");
        model.AddTo(command);
        command.Add(output);
        command.Add(overwrite);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, replacedWhole: true, r.GetValue(model.Model), r.GetValue(model.Tokenizer));
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            if (source.Kind != ModelSourceKind.HuggingFaceDirectory)
                throw new LinearizeException($"--model {source.Path}: quantize reads a Hugging Face directory (safetensors); write a llama2.c file as one with 'linearize import-llama2c' first");
            var watch = Stopwatch.StartNew();
            var result = EngineQuantizer.Quantize(source.Path, outDir, source.TokenizerPath);
            double seconds = watch.Elapsed.TotalSeconds;
            if (r.GetValue(json))
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    output = outDir, matrices = result.Matrices, bytes_before = result.BytesBefore, bytes_after = result.BytesAfter, seconds,
                }));
            else
                Console.Out.WriteLine($"wrote {outDir}: {Plural.Of(result.Matrices, "matrix")} as q8, " +
                                      $"{ConsoleUi.Bytes(result.BytesBefore)} → {ConsoleUi.Bytes(result.BytesAfter)} ({seconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
