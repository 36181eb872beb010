using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;

namespace Linearize.Tests.Inference;

/// <summary>
/// The engine with <see cref="EngineOptions.BFloat16Products"/>: prefill then steps gives the bits stepping token by
/// token gives (decoding and prefill share the batch-invariant product), and the logits match a float32 TorchSharp
/// model holding the same bfloat16 weights whose projections see bfloat16-rounded inputs
/// (<see cref="ActivationRounding"/>) — for a teacher and a Liger model, with the native tiles (AVX-512) and with the
/// managed emulation (AVX2).
/// </summary>
[Collection("Torch")]
public sealed class BFloat16ProductsEngineTests
{
    private static int[] Ids(int vocab, int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();
    }

    private static LlamaForCausalLM Model(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        return method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LigerConversionTests.Lin(method));
    }

    private static EngineOptions Options(KernelIsa isa, int chunk = 512) =>
        new() { Weights = WeightFormat.BFloat16, BFloat16Products = true, Isa = isa, Threads = 2, PrefillChunk = chunk, ParallelMinBytes = 0 };

    /// <summary>A 45-token prompt in blocks of 20 (tiles of 6 tokens cut anywhere), then 12 steps, against the same 57
    /// tokens stepped one at a time: every logit of the last prompt token and of each step, bit for bit.</summary>
    [IsaInlineData("teacher", KernelIsa.Avx512)]
    [IsaInlineData("liger-gla", KernelIsa.Avx512)]
    [IsaInlineData("liger-gla", KernelIsa.Avx2)]
    [Theory]
    public void PrefillThenStepsEqualsSteppingBitForBit(string method, KernelIsa isa)
    {
        using var model = Model(method);
        using var engine = Engines.Create(model, Options(isa, chunk: 20));
        const int prompt = 45, steps = 12;
        var ids = Ids(model.Config.VocabSize, prompt + steps, 21);
        using var prefilled = engine.CreateSequence();
        using var stepped = engine.CreateSequence();
        var expected = new List<float[]>();
        foreach (int id in ids)
            expected.Add(engine.Step(stepped, id).ToArray());
        var got = new List<float[]> { engine.Prefill(prefilled, ids.AsSpan(0, prompt)).ToArray() };
        foreach (int id in ids.Skip(prompt))
            got.Add(engine.Step(prefilled, id).ToArray());
        for (int i = 0; i < got.Count; i++)
            Assert.True(got[i].AsSpan().SequenceEqual(expected[prompt - 1 + i]), $"{method} {isa}: token {prompt - 1 + i} differs after prefill");
    }

    /// <summary>The most one activation rounded to the neighbouring bfloat16 moves a logit on these tiny models (the
    /// engine and the reference compute an activation in their own float order, so one within a rounding error of a
    /// bfloat16 tie can round either way; observed: 2.4e-3 on 1 step in 300, liger-gla). A wrong rounding rule or a
    /// product read from the wrong row would move logits by far more.</summary>
    private const double TieFlipBound = 1e-2;

    [IsaInlineData("teacher", KernelIsa.Avx512)]
    [IsaInlineData("liger-gla", KernelIsa.Avx512)]
    [IsaInlineData("teacher", KernelIsa.Avx2)]
    [Theory]
    public void EqualsAFloatModelWithRoundedWeightsAndActivations(string method, KernelIsa isa)
    {
        using var model = Model(method);
        using var engine = Engines.Create(model, Options(isa));
        var ids = Ids(model.Config.VocabSize, 300, 4);
        WeightRounding.Apply(model, WeightFormat.BFloat16);
        double unrounded = EngineEqualsTorchTests.MaxDifference(model, engine, ids);
        Assert.True(unrounded > 1e-3, $"bfloat16 activations should be visible against float32 ones (Δ {unrounded:E2})");
        using var rounding = ActivationRounding.Apply(model, WeightFormat.BFloat16, bfloat16Products: true);
        var steps = EngineEqualsTorchTests.StepDifferences(model, engine, ids);
        // As for q8 (EngineEqualsTorchTests): a flipped rounding may put up to 1 % of steps over the tolerance.
        int over = steps.Count(d => d > 1e-4);
        Assert.True(over <= steps.Length / 100, $"{method} {isa}: {over} of {steps.Length} steps over 1e-4 (max |Δlogit| = {steps.Max():E2})");
        Assert.True(steps.Max() <= TieFlipBound, $"{method} {isa}: max |Δlogit| = {steps.Max():E2} exceeds what one flipped rounding explains");
    }
}
