using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference;

/// <summary>
/// The decode engine against its reference, the TorchSharp model decoding with its cache: logits at every one of 1,000
/// steps within 1e-4 (float32), for the teacher variants and every converted method; the cache hand-over after a
/// TorchSharp prefill; batches; bfloat16 and q8 against a float32 model holding the same rounded weights (and, for q8,
/// the same Q8-rounded projection inputs).
/// </summary>
[Collection("Torch")]
public sealed class EngineEqualsTorchTests
{
    private const double Tolerance = 1e-4;

    private static int[] Ids(int vocab, int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();
    }

    /// <summary>Feeds the same ids to both; returns the largest |logit difference| over all steps.</summary>
    internal static double MaxDifference(LlamaForCausalLM model, DecodeEngine engine, int[] ids, int prefill = 0) =>
        StepDifferences(model, engine, ids, prefill).Max();

    /// <summary>Feeds the same ids to both; returns each step's largest |logit difference|.</summary>
    internal static double[] StepDifferences(LlamaForCausalLM model, DecodeEngine engine, int[] ids, int prefill = 0)
    {
        using var noGrad = no_grad();
        using var cache = model.CreateCache();
        if (prefill > 0)
            using (var scope = NewDisposeScope())
                model.Forward(tensor(ids.Take(prefill).Select(i => (long)i).ToArray()).view(1, -1), cache);
        using var seq = prefill > 0 ? engine.Import(cache) : engine.CreateSequence();
        Assert.Equal(prefill, seq.Position);
        double spread = 0;
        var worst = new double[ids.Length - prefill];
        for (int t = prefill; t < ids.Length; t++)
        {
            using var scope = NewDisposeScope();
            var expected = model.Forward(tensor(new long[] { ids[t] }).view(1, 1), cache)[0, 0].data<float>().ToArray();
            var actual = engine.Step(seq, ids[t]);
            for (int v = 0; v < expected.Length; v++)
                worst[t - prefill] = Math.Max(worst[t - prefill], Math.Abs(expected[v] - actual[v]));
            spread = Math.Max(spread, expected.Max() - expected.Min());
        }

        Assert.True(spread > 0.5, $"logits barely vary (spread {spread}); the comparison would prove nothing");
        Assert.Equal(cache.SeenTokens, seq.Position);
        return worst;
    }

    [Theory]
    [MemberData(nameof(TinyModels.Variants), MemberType = typeof(TinyModels))]
    public void TeacherThousandSteps(string variant)
    {
        using var model = TinyModels.Create(variant);
        using var engine = Engines.Create(model);
        double diff = MaxDifference(model, engine, Ids(model.Config.VocabSize, 1000, 1));
        Assert.True(diff <= Tolerance, $"{variant}: max |Δlogit| = {diff:E2}");
    }

    public static IEnumerable<object[]> Converted() => new[]
    {
        new object[] { "liger-gla", "gqa-untied", false, false },
        new object[] { "liger-hgrn2", "gqa-untied", false, false },
        new object[] { "liger-gsa", "gqa-untied", false, false },
        new object[] { "liger-mamba2", "gqa-untied", false, false },
        new object[] { "liger-mlstm", "qwen2-bias", false, false },
        new object[] { "liger-retention", "llama3-rope", false, false },
        new object[] { "swa", "gqa-untied", false, false },
        new object[] { "liger-gdn", "qwen2-bias", false, false },
        new object[] { "liger-deltanet", "gqa-untied", false, true },
        new object[] { "liger-gla", "mha-tied", true, false },
        new object[] { "liger-gsa", "linear-rope-headdim", false, true },
        new object[] { "liger-mamba2", "qwen2-bias", true, true },
    };

    [Theory]
    [MemberData(nameof(Converted))]
    public void ConvertedThousandSteps(string method, string variant, bool normalize, bool hybrid)
    {
        using var teacher = TinyModels.Create(variant);
        // A window of 8 wraps the ring 125 times in 1,000 steps; swa keeps 2 sinks.
        var lin = LigerConversionTests.Lin(method, window: 8, sinks: method == "swa" ? 2 : 0, normalize: normalize,
            softmaxLayers: hybrid ? new[] { 0 } : null);
        using var model = Converter.Convert(teacher, lin);
        using var engine = Engines.Create(model);
        double diff = MaxDifference(model, engine, Ids(model.Config.VocabSize, 1000, 2));
        Assert.True(diff <= Tolerance, $"{method} on {variant}: max |Δlogit| = {diff:E2}");
    }

    [Theory]
    [InlineData("liger-gla", 37)]
    [InlineData("liger-gsa", 70)]
    [InlineData("swa", 5)]
    [InlineData("teacher", 70)]
    public void HandOverAfterTorchPrefillContinuesExactly(string method, int prefill)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied")
            : Converter.Convert(teacher, LigerConversionTests.Lin(method, window: 8, sinks: method == "swa" ? 3 : 0));
        using var engine = Engines.Create(model);
        double diff = MaxDifference(model, engine, Ids(model.Config.VocabSize, prefill + 60, 3), prefill);
        Assert.True(diff <= Tolerance, $"{method} after a {prefill}-token prefill: max |Δlogit| = {diff:E2}");
    }

    public static IEnumerable<object[]> LolcatsCases() => new[]
    {
        new object[] { "lolcats-sw", "gqa-untied", "hedgehog", 0 },
        new object[] { "lolcats-tk", "gqa-untied", "hedgehog", 0 },
        new object[] { "lolcats-sw", "qwen2-bias", "t2r", 0 },
        new object[] { "lolcats-tk", "mha-tied", "t2r", 0 },
        new object[] { "lolcats-sw", "linear-rope-headdim", "hedgehog", 37 },
        new object[] { "lolcats-tk", "gqa-untied", "hedgehog", 37 },
        new object[] { "lolcats-tk", "llama3-rope", "hedgehog", 16 },
    };

    [Theory]
    [MemberData(nameof(LolcatsCases))]
    public void LolcatsThousandSteps(string method, string variant, string map, int prefill)
    {
        // Perturbed maps and window factors (as after attention transfer); a window of 8 folds keys every step (sw)
        // or every 8 steps (tk); after a prefill, the engine continues from the TorchSharp cache.
        using var teacher = TinyModels.Create(variant);
        var lin = LolcatsConversionTests.Lin(method, window: 8,
            map: map == "t2r" ? LolcatsFeatureMapKind.T2r : LolcatsFeatureMapKind.Hedgehog);
        using var model = LolcatsConversionTests.Converted(teacher, lin);
        using var engine = Engines.Create(model);
        double diff = MaxDifference(model, engine, Ids(model.Config.VocabSize, prefill + 1000, 4), prefill);
        Assert.True(diff <= Tolerance, $"{method} {map} on {variant} after {prefill}: max |Δlogit| = {diff:E2}");
    }

    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    public void BatchEqualsEachSequenceAlone(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LigerConversionTests.Lin(method));
        using var engine = Engines.Create(model);
        const int batch = 6, steps = 40;
        var ids = Enumerable.Range(0, batch).Select(b => Ids(model.Config.VocabSize, steps + b * 3, 10 + b)).ToArray();
        var alone = new List<float[]>[batch];
        for (int b = 0; b < batch; b++)
        {
            using var seq = engine.CreateSequence();
            alone[b] = ids[b].Select(t => engine.Step(seq, t).ToArray()).ToList();
        }

        // In the batch, sequence b first takes 3·b tokens alone, so rows sit at different positions.
        var seqs = Enumerable.Range(0, batch).Select(_ => engine.CreateSequence()).ToArray();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < 3 * b; t++)
                engine.Step(seqs[b], ids[b][t]);
        double worst = 0;
        for (int s = 0; s < steps; s++)
        {
            var tokens = Enumerable.Range(0, batch).Select(b => ids[b][3 * b + s]).ToArray();
            engine.Step(seqs, batch, tokens);
            for (int b = 0; b < batch; b++)
            {
                var row = engine.Logits(b);
                var expected = alone[b][3 * b + s];
                for (int v = 0; v < row.Length; v++)
                    worst = Math.Max(worst, Math.Abs(row[v] - expected[v]));
            }
        }

        foreach (var s in seqs)
            s.Dispose();
        Assert.True(worst <= 1e-5, $"{method}: batch vs alone max |Δlogit| = {worst:E2}");
    }

    /// <summary>
    /// With <see cref="EngineOptions.BatchInvariant"/> a sequence's logits are bit-identical whether it runs alone or
    /// beside others at other positions (what a server promises its clients). Lengths pass 256 so the teacher's
    /// attention is cut into slices; every format and ISA.
    /// </summary>
    [Theory]
    [IsaInlineData("teacher", WeightFormat.Float32, KernelIsa.Avx512)]
    [IsaInlineData("teacher", WeightFormat.Q8, KernelIsa.Avx2)]
    [IsaInlineData("teacher", WeightFormat.BFloat16, KernelIsa.Scalar)]
    [IsaInlineData("teacher", WeightFormat.BFloat16, KernelIsa.Avx512, true)]
    [IsaInlineData("liger-gla", WeightFormat.Float32, KernelIsa.Avx2)]
    [IsaInlineData("liger-gla", WeightFormat.Q8, KernelIsa.Avx512)]
    [IsaInlineData("lolcats-sw", WeightFormat.Float32, KernelIsa.Avx512)]
    public void BatchInvariantStepIsBitIdenticalToRunningAlone(string method, WeightFormat format, KernelIsa isa, bool float32Activations = false)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LigerConversionTests.Lin(method));
        using var engine = Engines.Create(model,
            new EngineOptions { Weights = format, Isa = isa, Threads = 2, BatchInvariant = true, BFloat16Products = !float32Activations });
        const int batch = 5, steps = 30;
        int[] head = { 290, 0, 7, 260, 33 }; // tokens each sequence takes alone before the batch runs
        var ids = Enumerable.Range(0, batch).Select(b => Ids(model.Config.VocabSize, head[b] + steps, 40 + b)).ToArray();
        var alone = new float[batch][][];
        for (int b = 0; b < batch; b++)
        {
            using var seq = engine.CreateSequence();
            alone[b] = ids[b].Select(t => engine.Step(seq, t).ToArray()).ToArray();
        }

        var seqs = Enumerable.Range(0, batch).Select(_ => engine.CreateSequence()).ToArray();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < head[b]; t++)
                engine.Step(seqs[b], ids[b][t]);
        int differing = 0;
        for (int s = 0; s < steps; s++)
        {
            // The batch shrinks and grows as in a server: rows [0, count) of a rotating membership.
            int count = 2 + s % (batch - 1);
            var members = Enumerable.Range(0, count).Select(i => (i + s) % batch).ToArray();
            var tokens = members.Select(b => ids[b][(int)seqs[b].Position]).ToArray();
            var positions = members.Select(b => (int)seqs[b].Position).ToArray();
            engine.Step(members.Select(b => seqs[b]).ToArray(), count, tokens);
            for (int i = 0; i < count; i++)
                if (!engine.Logits(i).SequenceEqual(alone[members[i]][positions[i]]))
                    differing++;
        }

        foreach (var s in seqs)
            s.Dispose();
        Assert.Equal(0, differing);
    }

    /// <summary>The most one activation rounded to the neighbouring Q8 quant moves a logit on these tiny models (observed:
    /// 2.4e-2 on 1 step in 300).</summary>
    private const double Q8TieFlipBound = 5e-2;

    [Theory]
    [InlineData(WeightFormat.BFloat16, "teacher")]
    [InlineData(WeightFormat.Q8, "teacher")]
    [InlineData(WeightFormat.BFloat16, "liger-gla")]
    [InlineData(WeightFormat.Q8, "liger-gsa")]
    public void RoundedFormatsEqualAFloatModelWithTheSameRoundedWeights(WeightFormat format, string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LigerConversionTests.Lin(method));
        // bfloat16 with float32 inputs (the widened weights): the rounded-input products have their own test,
        // BFloat16ProductsEngineTests, against a model whose inputs are rounded too.
        using var engine = Engines.Create(model, new EngineOptions { Weights = format, BFloat16Products = false });
        var ids = Ids(model.Config.VocabSize, 300, 4);
        double rawDiff = MaxDifference(model, engine, ids);
        Assert.True(rawDiff > 1e-3, $"{format}: rounding should be visible against the float32 model (Δ {rawDiff:E2})");
        WeightRounding.Apply(model, format);
        using var rounding = ActivationRounding.Apply(model, format); // q8 products take Q8-rounded inputs, as llama.cpp's
        var steps = StepDifferences(model, engine, ids);
        // The engine and the reference compute each activation in their own float order, so one that lands within a
        // rounding error of a Q8 tie can round to the neighbouring quant on one side only: that step's logits then
        // differ by one quant step's effect (~1e-2). Rare (about one activation in 10⁵), so q8 may miss on 1% of steps.
        int allowed = format == WeightFormat.Q8 ? steps.Length / 100 : 0;
        int over = steps.Count(d => d > Tolerance);
        Assert.True(over <= allowed, $"{format} {method}: {over} of {steps.Length} steps over {Tolerance:E0} " +
            $"(max |Δlogit| = {steps.Max():E2}) against the rounded float32 model");
        // And a flipped quant moves a logit by about one quant step's effect, never more: an error of another kind
        // (a wrong scale, a block read from the wrong row) would show as a larger difference even on a few steps.
        Assert.True(steps.Max() <= Q8TieFlipBound, $"{format} {method}: max |Δlogit| = {steps.Max():E2} exceeds what one flipped quant explains");
    }

    [Theory]
    [IsaInlineData(KernelIsa.Scalar, 1)]
    [IsaInlineData(KernelIsa.Avx2, 3)]
    public void EveryIsaAndThreadCountGivesTheSameModel(KernelIsa isa, int threads)
    {
        using var teacher = TinyModels.Create("qwen2-bias");
        using var model = Converter.Convert(teacher, LigerConversionTests.Lin("liger-gla", softmaxLayers: new[] { 1 }));
        using var engine = Engines.Create(model, new EngineOptions { Isa = isa, Threads = threads, ParallelMinBytes = 0 });
        double diff = MaxDifference(model, engine, Ids(model.Config.VocabSize, 200, 5));
        Assert.True(diff <= Tolerance, $"{isa} × {threads} threads: max |Δlogit| = {diff:E2}");
    }

    [Fact]
    public void StateBytesDoNotGrowForLinearModels()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, LigerConversionTests.Lin("liger-gla"));
        using var engine = Engines.Create(model);
        using var seq = engine.CreateSequence();
        long before = seq.StateBytes;
        foreach (int t in Ids(model.Config.VocabSize, 300, 6))
            engine.Step(seq, t);
        Assert.Equal(before, seq.StateBytes);

        using var softmax = Engines.Create(teacher);
        using var kv = softmax.CreateSequence();
        softmax.Prefill(kv, Ids(teacher.Config.VocabSize, 100, 7));
        long at100 = kv.StateBytes;
        softmax.Prefill(kv, Ids(teacher.Config.VocabSize, 100, 8));
        Assert.Equal(2 * at100, kv.StateBytes);
    }

    [Fact]
    public void UnmergedLoraAndBadTokensAreClearErrors()
    {
        using var model = TinyModels.Create("gqa-untied");
        using var engine = Engines.Create(model);
        using var seq = engine.CreateSequence();
        var e = Assert.Throws<LinearizeException>(() => engine.Step(seq, model.Config.VocabSize));
        Assert.Contains("outside the vocabulary", e.Message);

        Linearize.Training.Lora.LoraInjector.Inject(model, new Linearize.Training.Lora.LoraOptions(), seed: 1);
        var lora = Assert.Throws<LinearizeException>(() => Engines.Create(model));
        Assert.Contains("merge", lora.Message);
    }
}
