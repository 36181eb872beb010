using System.CommandLine;
using System.Diagnostics;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Conversion;
using Linearize.Modeling;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize convert</c>: teacher → linearized checkpoint directory.</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var method = new Option<string>("--method") { Description = $"Replacement for softmax attention: {string.Join(", ", LinearizationConfig.Methods)}", Required = true };
        method.AcceptOnlyFromAmong(LinearizationConfig.Methods);
        var window = new Option<int>("--window") { Description = "Keys each query sees in the softmax window, itself included (paper: 64; the reference code's flash-attention window is 65)", DefaultValueFactory = _ => 64 };
        var softmaxLayers = new Option<string?>("--softmax-layers") { Description = "Comma-separated layers that stay full softmax attention, e.g. 3,7" };
        var softmaxEvery = new Option<int?>("--softmax-every") { Description = "Keep every K-th layer softmax (layers K-1, 2K-1, …); 8 is the paper's 7:1 hybrid" };
        var alpha = new Option<double>("--mix-alpha") { Description = "Weight of the window branch (paper Eq. 9)", DefaultValueFactory = _ => 0.5 };
        var beta = new Option<double>("--mix-beta") { Description = "Weight of the recurrent branch (paper Eq. 9)", DefaultValueFactory = _ => 0.5 };
        var normalizer = new Option<double?>("--gate-normalizer") { Description = "Divide the log gate by this (default: 16 for gla/gsa, 1 for the others, as in the reference)" };
        var slots = new Option<int?>("--slots") { Description = "liger-gsa: slots per head (default: head_dim)" };
        var sinks = new Option<int>("--sinks") { Description = "swa: always-visible first tokens", DefaultValueFactory = _ => 0 };
        var normalize = new Option<bool>("--normalize-recurrent") { Description = "Divide the recurrent branch by its denominator φ(q)·Σφ(k) (not in Liger; an option for small heads)" };
        var output = new Option<string>("--out", "-o") { Description = "Output directory", Required = true };
        var overwrite = OutputDirectory.OverwriteOption();

        var command = new Command("convert",
            "Convert a teacher into a linearized model (Liger variants reuse q/k/v/o and add no parameters) and write a checkpoint directory that generate, eval, inspect and train load directly.");
        model.AddTo(command);
        foreach (var o in new Option[] { method, window, softmaxLayers, softmaxEvery, alpha, beta, normalizer, slots, sinks, normalize, output, overwrite })
            command.Add(o);
        command.SetAction(r => CliRunner.Run(() =>
        {
            if (r.GetValue(softmaxLayers) is not null && r.GetValue(softmaxEvery) is not null)
                throw new LinearizeException("give --softmax-layers or --softmax-every, not both");
            string outDir = r.GetValue(output)!;
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: false, r.GetValue(model.Model), r.GetValue(model.Tokenizer));
            var watch = Stopwatch.StartNew();
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            using var teacher = ModelLoader.Load(source, model.ParseDType(r));
            int layers = teacher.Config.NumHiddenLayers;
            string m = r.GetValue(method)!;
            var lin = new LinearizationConfig
            {
                Method = m,
                Sinks = r.GetValue(sinks),
                SoftmaxLayers = r.GetValue(softmaxLayers) is string list ? LinearizationConfig.ParseLayerList(list, layers)
                    : r.GetValue(softmaxEvery) is int k ? LinearizationConfig.EveryKth(k, layers) : Array.Empty<int>(),
                Liger = new LigerOptions
                {
                    Family = m == "swa" ? LigerFamily.Gla : LinearizationConfig.FamilyOf(m),
                    Window = r.GetValue(window),
                    Alpha = r.GetValue(alpha),
                    Beta = r.GetValue(beta),
                    GateNormalizer = r.GetValue(normalizer),
                    Slots = r.GetValue(slots),
                    NormalizeRecurrent = r.GetValue(normalize),
                },
            };
            if (m == "swa" && (r.GetValue(normalize) || r.GetValue(slots) is not null || r.GetValue(normalizer) is not null))
                throw new LinearizeException("--normalize-recurrent, --slots and --gate-normalizer apply to liger-* methods, not swa");
            if (m != "swa" && lin.Sinks > 0)
                throw new LinearizeException("--sinks applies to swa only");
            using var student = Converter.ConvertToDirectory(teacher, lin, outDir, source.TokenizerPath);
            var mixers = student.Model.Layers.Select(l => l.SelfAttention.Describe()).GroupBy(x => x)
                .Select(g => $"{g.Key} × {g.Count()}");
            Console.Error.WriteLine($"wrote {outDir}: {string.Join("; ", mixers)} ({watch.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
