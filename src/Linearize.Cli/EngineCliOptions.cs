using System.CommandLine;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;

namespace Linearize.Cli;

/// <summary>The options of commands that decode: which path runs the steps, how the engine packs weights, threads.</summary>
public sealed class EngineCliOptions
{
    public Option<string> Engine { get; } = new("--engine")
    {
        Description = "Decoding path: 'engine' (packed weights, vectorized kernels; default) or 'torch' (the TorchSharp model step by step)",
        DefaultValueFactory = _ => "engine",
    };

    public Option<string> WeightDType { get; } = new("--weight-dtype")
    {
        Description = "Engine weight storage: float32, bfloat16 (half the bytes) or q8 (8-bit blocks of 32, ~3.6x fewer bytes, multiplied with activations rounded to 8-bit blocks as llama.cpp does); float32 arithmetic otherwise. " +
                      "A q8 checkpoint (linearize quantize) runs as q8 unless this is given, which dequantizes it",
        DefaultValueFactory = _ => "float32",
    };

    public Option<int?> Threads { get; } = new("--threads")
    {
        Description = "Engine threads (default: one per core)",
    };

    public Option<bool> NoMmap { get; } = new("--no-mmap")
    {
        Description = "Copy every weight into the process's own memory. By default a checkpoint's bfloat16/float32 matrices that are already in " +
                      "--weight-dtype are used where the file is mapped: start-up reads nothing and the pages are shared with the page cache",
    };

    public EngineCliOptions()
    {
        Engine.AcceptOnlyFromAmong("engine", "torch");
        WeightDType.AcceptOnlyFromAmong("float32", "bfloat16", "q8");
    }

    public void AddTo(Command command)
    {
        command.Add(Engine);
        command.Add(WeightDType);
        command.Add(Threads);
        command.Add(NoMmap);
    }

    public bool UseEngine(ParseResult r) => r.GetValue(Engine) == "engine";

    public EngineOptions Parse(ParseResult r)
    {
        int threads = r.GetValue(Threads) ?? Environment.ProcessorCount;
        if (threads < 1)
            throw new LinearizeException($"--threads must be at least 1, got {threads}");
        return new EngineOptions
        {
            Weights = EngineOptions.ParseFormat(r.GetValue(WeightDType)!), Threads = threads, WeightsInPlace = !r.GetValue(NoMmap),
            KeepStoredQ8 = r.GetResult(WeightDType) is not { Implicit: false },
        };
    }

    /// <summary>The engine for <paramref name="model"/>, or null with <c>--engine torch</c> (which refuses a non-float32
    /// --weight-dtype rather than ignoring it).</summary>
    public DecodeEngine? Create(ParseResult r, LlamaForCausalLM model)
    {
        if (UseEngine(r))
            return Engines.Create(model, Parse(r));
        if (r.GetValue(WeightDType) != "float32")
            throw new LinearizeException("--weight-dtype applies to the decode engine; drop it or use --engine engine");
        return null;
    }

    /// <summary>The engine packed straight from <paramref name="source"/>'s files (no TorchSharp model held), or null
    /// with <c>--engine torch</c> (with the same refusal as <see cref="Create"/>).</summary>
    public DecodeEngine? Load(ParseResult r, ModelSource source)
    {
        if (UseEngine(r))
            return Engines.Load(source, Parse(r));
        if (r.GetValue(WeightDType) != "float32")
            throw new LinearizeException("--weight-dtype applies to the decode engine; drop it or use --engine engine");
        return null;
    }
}
