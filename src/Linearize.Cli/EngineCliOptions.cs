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
        Description = "Engine weight storage: float32, bfloat16 (half the bytes, multiplied with activations rounded to bfloat16 as llama.cpp does; " +
                      "see --float32-activations) or q8 (8-bit blocks of 32, ~3.6x fewer bytes, multiplied with activations rounded to 8-bit " +
                      "blocks as llama.cpp does); sums and everything between the products in float32. " +
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

    public Option<bool> Float32Activations { get; } = new("--float32-activations")
    {
        Description = "With --weight-dtype bfloat16: keep each product's input in float32 and widen the weights instead. By default " +
                      "the input is rounded to bfloat16 and multiplied bfloat16 by bfloat16 (AVX512-BF16 vdpbf16ps where the CPU has " +
                      "it), as llama.cpp does for BF16 weights: about twice the prefill throughput, activations to 8 significant bits",
    };

    /// <summary>What <c>--weight-dtype bfloat16</c> now does by default; accepted so that older commands still run.</summary>
    public Option<bool> BFloat16Products { get; } = new("--bf16-products")
    {
        Description = "The default with --weight-dtype bfloat16 (bfloat16 × bfloat16 products); kept so older commands run",
        Hidden = true,
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
        command.Add(Float32Activations);
        command.Add(BFloat16Products);
    }

    public bool UseEngine(ParseResult r) => r.GetValue(Engine) == "engine";

    public EngineOptions Parse(ParseResult r)
    {
        int threads = r.GetValue(Threads) ?? Environment.ProcessorCount;
        if (threads < 1)
            throw new LinearizeException($"--threads must be at least 1, got {threads}");
        var weights = EngineOptions.ParseFormat(r.GetValue(WeightDType)!);
        bool products = Products(r, weights == WeightFormat.BFloat16, Float32Activations, BFloat16Products);
        return new EngineOptions
        {
            Weights = weights, Threads = threads, WeightsInPlace = !r.GetValue(NoMmap), BFloat16Products = products,
            KeepStoredQ8 = r.GetResult(WeightDType) is not { Implicit: false },
        };
    }

    /// <summary>The engine for <paramref name="model"/>, or null with <c>--engine torch</c> (which refuses a non-float32
    /// --weight-dtype rather than ignoring it).</summary>
    public DecodeEngine? Create(ParseResult r, LlamaForCausalLM model)
    {
        if (UseEngine(r))
            return Engines.Create(model, Parse(r));
        RefuseTorch(r);
        return null;
    }

    /// <summary>The engine packed straight from <paramref name="source"/>'s files (no TorchSharp model held), or null
    /// with <c>--engine torch</c> (with the same refusal as <see cref="Create"/>).</summary>
    public DecodeEngine? Load(ParseResult r, ModelSource source)
    {
        if (UseEngine(r))
            return Engines.Load(source, Parse(r));
        RefuseTorch(r);
        return null;
    }

    private void RefuseTorch(ParseResult r)
    {
        if (r.GetValue(WeightDType) != "float32")
            throw new LinearizeException("--weight-dtype applies to the decode engine; drop it or use --engine engine");
        if (r.GetValue(Float32Activations) || r.GetValue(BFloat16Products))
            throw new LinearizeException($"--{(r.GetValue(Float32Activations) ? "float32-activations" : "bf16-products")} applies to the decode engine; drop it or use --engine engine");
    }

    /// <summary>Whether bfloat16 weights multiply bfloat16-rounded inputs: yes unless <paramref name="float32Activations"/>
    /// is given; either flag without bfloat16 weights is a one-line error (float32 products are float32 throughout,
    /// and q8 always multiplies Q8 blocks). Shared with <c>eval ppl</c>, which scores what the engine computes.</summary>
    public static bool Products(ParseResult r, bool bfloat16Weights, Option<bool> float32Activations, Option<bool> bf16Products)
    {
        bool keep = r.GetValue(float32Activations), round = r.GetValue(bf16Products);
        if (keep && round)
            throw new LinearizeException("--float32-activations and --bf16-products contradict each other: give one");
        if ((keep || round) && !bfloat16Weights)
            throw new LinearizeException($"--{(keep ? "float32-activations" : "bf16-products")} sets how bfloat16 weights multiply: add --weight-dtype bfloat16");
        return bfloat16Weights && !keep;
    }
}
