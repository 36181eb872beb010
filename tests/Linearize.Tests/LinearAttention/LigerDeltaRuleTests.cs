using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Inference;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// The delta-rule Liger layers (<c>liger-gdn</c>, <c>liger-deltanet</c>): decoding with a cache equals the forward
/// pass, padded steps change nothing, conversion adds only the zero-initialised <c>b_proj</c> and round-trips
/// through a directory, the options refuse what does not apply, and the decode engine equals TorchSharp (steps, hand-over,
/// prefill in uneven blocks, fixed state size).
/// </summary>
[Collection("Torch")]
public sealed class LigerDeltaRuleTests
{
    private static LinearizationConfig Lin(string method, bool negativeEigenvalues = false, int window = 8) => new()
    {
        Method = LinearizationMethods.Get(method, "test"),
        Liger = new LigerOptions
        {
            Family = LinearizationMethods.Get(method, "test").Family!.Value, Window = window, NegativeEigenvalues = negativeEigenvalues,
        },
    };

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    /// <summary>Random b_proj weights, so that β varies by token and head (zero-initialised, it would be constant).</summary>
    private static void RandomizeBeta(LlamaForCausalLM model)
    {
        using var noGrad = no_grad();
        using var g = new torch.Generator(77);
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains(".b_proj."))
                p.copy_(randn(p.shape, generator: g).Times(0.5).to(p.dtype));
    }

    [Theory]
    [InlineData("liger-gdn", false)]
    [InlineData("liger-gdn", true)]
    [InlineData("liger-deltanet", false)]
    [InlineData("liger-deltanet", true)]
    public void TokenByTokenDecodingEqualsFullForward(string method, bool negativeEigenvalues)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method, negativeEigenvalues));
        RandomizeBeta(model);
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 150, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 70), cache) }; // chunked prefill across a chunk boundary
        for (int t = 70; t < 150; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.RelClose(method, full, cat(parts, 1), 1e-5);
    }

    [Theory]
    [InlineData("liger-gdn")]
    [InlineData("liger-deltanet")]
    public void LeftPaddedBatchEqualsUnpaddedRows(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin(method, window: 4));
        RandomizeBeta(model);
        using var noGrad = no_grad();
        var row = new long[] { 5, 9, 11, 13, 17, 19, 23, 29 };
        var ids = tensor(new long[] { 0, 0, 0 }.Concat(row).ToArray()).view(1, -1);
        var mask = tensor(new long[] { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }).view(1, -1);
        var padded = model.Forward(ids, attentionMask: mask)[0].narrow(0, 3, 8);
        var plain = model.Forward(tensor(row).view(1, -1))[0];
        TensorAssert.Close("left padding", plain, padded, 1e-5);
    }

    [Fact]
    public void ConversionAddsOnlyAZeroBetaProjectionAndRoundTrips()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.ConvertToDirectory(teacher, Lin("liger-gdn", negativeEigenvalues: true), dir.Path, null);
        var teacherNames = teacher.state_dict().Keys.ToHashSet();
        var added = model.state_dict().Where(kv => !teacherNames.Contains(kv.Key)).ToList();
        Assert.Equal(teacher.Config.NumHiddenLayers, added.Count);
        foreach (var (name, w) in added)
        {
            Assert.EndsWith(".self_attn.b_proj.weight", name);
            Assert.Equal(new long[] { teacher.Config.NumAttentionHeads, teacher.Config.HiddenSize }, w.shape);
            Assert.Equal(0, w.abs().max().item<float>());
        }

        using var loaded = ModelLoader.Load(new ModelSource(ModelSourceKind.HuggingFaceDirectory, dir.Path, null));
        Assert.Contains("liger-gdn", loaded.Model.Layers[0].SelfAttention.Describe());
        Assert.Contains("β∈(0,2)", loaded.Model.Layers[0].SelfAttention.Describe());
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 20, 7);
        TensorAssert.Close("reloaded", model.Forward(ids), loaded.Forward(ids), 0);
    }

    [Fact]
    public void OptionsRefuseWhatDoesNotApply()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var ex = Assert.Throws<LinearizeException>(() => Converter.Convert(teacher, Lin("liger-gla", negativeEigenvalues: true)));
        Assert.Contains("negative eigenvalues", ex.Message);
        var normalized = new LinearizationConfig
        {
            Method = LinearizationMethods.LigerDeltaNet,
            Liger = new LigerOptions { Family = LigerFamily.DeltaNet, NormalizeRecurrent = true },
        };
        Assert.Throws<LinearizeException>(() => Converter.Convert(teacher, normalized));
    }

    private static int[] TokenIds(int vocab, int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();
    }

    private static LlamaForCausalLM Converted(string method, bool negativeEigenvalues, string variant = "gqa-untied")
    {
        using var teacher = TinyModels.Create(variant);
        var model = Converter.Convert(teacher, Lin(method, negativeEigenvalues));
        RandomizeBeta(model);
        return model;
    }

    /// <summary>
    /// The engine's delta-rule step against TorchSharp's: logits at each of 250 steps within 1e-4 (a window of 8 wraps
    /// its ring 30 times), β randomised per token and head; from an empty state, and after a TorchSharp prefill whose
    /// cache the engine imports. Qwen2's q/k/v bias checks that b_proj's rows, fused after v, get no bias.
    /// </summary>
    [Theory]
    [InlineData("liger-gdn", false, "gqa-untied", 0)]
    [InlineData("liger-gdn", true, "gqa-untied", 0)]
    [InlineData("liger-deltanet", false, "gqa-untied", 0)]
    [InlineData("liger-deltanet", true, "gqa-untied", 0)]
    [InlineData("liger-gdn", true, "qwen2-bias", 37)]
    [InlineData("liger-deltanet", false, "mha-tied", 70)]
    public void EngineStepsEqualTorchSharp(string method, bool negativeEigenvalues, string variant, int prefill)
    {
        using var model = Converted(method, negativeEigenvalues, variant);
        using var engine = Engines.Create(model);
        var ids = TokenIds(model.Config.VocabSize, prefill + 250, 21);
        double diff = EngineEqualsTorchTests.MaxDifference(model, engine, ids, prefill);
        Assert.True(diff <= 1e-4, $"{method} (β∈(0,{(negativeEigenvalues ? 2 : 1)})) on {variant} after {prefill}: max |Δlogit| = {diff:E2}");
    }

    /// <summary>
    /// Engine prefill of a 77-token prompt cut into uneven slices (7, 1, 30, 2, 37) on a 13-row block engine: every row's
    /// logits against TorchSharp's forward pass (the chunked kernel) within 1e-4, then 40 engine steps against TorchSharp
    /// steps from the cache that pass left; and the slices give the same bits as the prompt in one block.
    /// </summary>
    [Theory]
    [InlineData("liger-gdn", false)]
    [InlineData("liger-gdn", true)]
    [InlineData("liger-deltanet", false)]
    [InlineData("liger-deltanet", true)]
    public void EnginePrefillInUnevenBlocksEqualsTheTorchForwardPass(string method, bool negativeEigenvalues)
    {
        using var model = Converted(method, negativeEigenvalues);
        int vocab = model.Config.VocabSize;
        const int prompt = 77, steps = 40;
        var ids = TokenIds(vocab, prompt + steps, 11);
        using var noGrad = no_grad();
        using var cache = model.CreateCache();
        float[] expected;
        using (var scope = NewDisposeScope())
            expected = model.Forward(tensor(ids.Take(prompt).Select(i => (long)i).ToArray()).view(1, -1), cache)[0].data<float>().ToArray();
        Assert.True(expected.Max() - expected.Min() > 0.5, "logits barely vary; the comparison would prove nothing");

        using var engine = Engines.Create(model, new EngineOptions { PrefillChunk = 13, Threads = 2 });
        using var seq = engine.CreateSequence();
        var actual = new float[prompt * vocab];
        int[] cuts = { 7, 1, 30, 2, 37 };
        for (int at = 0, k = 0; at < prompt; at += cuts[k++])
            engine.Prefill(seq, ids.AsSpan(at, cuts[k]), 0, actual.AsSpan(at * vocab, cuts[k] * vocab));
        Assert.Equal(prompt, seq.Position);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= 1e-4, $"{method}: prefill max |Δlogit| = {worst:E2}");

        using (var whole = Engines.Create(model, new EngineOptions { PrefillChunk = 4096 }))
        using (var one = whole.CreateSequence())
        {
            var oneBlock = whole.Prefill(one, ids.AsSpan(0, prompt)).ToArray();
            Assert.True(oneBlock.SequenceEqual(actual.AsSpan((prompt - 1) * vocab, vocab).ToArray()), $"{method}: uneven slices differ from one block");
            using var copy = seq.Clone();
            Assert.True(whole.Step(one, ids[prompt]).ToArray().SequenceEqual(engine.Step(copy, ids[prompt]).ToArray()),
                $"{method}: the state uneven slices left differs from one block's");
        }

        for (int t = prompt; t < ids.Length; t++)
        {
            using var scope = NewDisposeScope();
            var step = model.Forward(tensor(new long[] { ids[t] }).view(1, 1), cache)[0, 0].data<float>().ToArray();
            var got = engine.Step(seq, ids[t]);
            for (int v = 0; v < vocab; v++)
                worst = Math.Max(worst, Math.Abs(step[v] - got[v]));
        }

        Assert.True(worst <= 1e-4, $"{method}: steps after prefill max |Δlogit| = {worst:E2}");
    }

    /// <summary>The engine's state is the same size after 100 and 100,000 tokens, and its recurrent part is exactly
    /// TorchSharp's <c>[H, K, V]</c> float32 state per layer.</summary>
    [Theory]
    [InlineData("liger-gdn")]
    [InlineData("liger-deltanet")]
    public void EngineStateBytesAreTheSameAt100And100kTokens(string method)
    {
        using var model = Converted(method, negativeEigenvalues: true);
        using var engine = Engines.Create(model, new EngineOptions { Threads = 2 });
        int vocab = model.Config.VocabSize;
        using var at100 = engine.CreateSequence();
        engine.Prefill(at100, TokenIds(vocab, 100, 5));
        engine.Step(at100, 7);
        using var at100k = engine.CreateSequence();
        engine.Prefill(at100k, TokenIds(vocab, 100_000, 6));
        var last = engine.Step(at100k, 7);
        Assert.True(last.ToArray().All(float.IsFinite), "the state must stay bounded over 100,000 tokens");
        Assert.Equal(at100.StateBytes, at100k.StateBytes);

        var c = model.Config;
        using var noGrad = no_grad();
        using var cache = model.CreateCache();
        model.Forward(Ids(vocab, 100, 5, b: 1), cache);
        long torchRecurrent = Enumerable.Range(0, c.NumHiddenLayers)
            .Sum(l => ((Linearize.Caching.LinearLayerCache)cache[l]!).State!.numel() * sizeof(float));
        long ring = 2L * c.NumHiddenLayers * c.NumKeyValueHeads * (8 - 1) * c.HeadDim * sizeof(float); // window 8
        Assert.Equal(torchRecurrent + ring, at100k.StateBytes);
    }
}
