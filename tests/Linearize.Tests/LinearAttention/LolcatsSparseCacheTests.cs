using Linearize.Caching;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using Linearize.Tests.Inference;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// LoLA's sparse cache on the LoLCATs sliding window (docs/METHODS.md §1.7): the recall error and the replay of offers on
/// hand-made cases, decoding equals the forward pass, with room for every pair the layer is the teacher's softmax, the
/// engine equals TorchSharp, the state does not grow, and N = 0 is the plain layer bit for bit.
/// </summary>
[Collection("Torch")]
public sealed class LolcatsSparseCacheTests
{
    private const int Slots = 4;

    private static LinearizationConfig Lin(int sparse = Slots, int window = 8)
    {
        var lin = LolcatsConversionTests.Lin("lolcats-sw", window: window);
        return lin with { Lolcats = lin.Lolcats with { SparseCache = sparse } };
    }

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    /// <summary>The state read with the pair's own key features, normalized by the key sum: a pair stored alone on its
    /// feature is recalled exactly, one against a different stored value is recalled as that value, an empty state
    /// recalls nothing (error ‖v‖²).</summary>
    [Fact]
    public void RecallErrorReadsTheStateWithTheKeysFeaturesAndTheKeySum()
    {
        float[] state = { 2, 4, 2, 0, 0, 0 }; // F = 2, D = 2: feature 0 holds 2·[1, 2] with key sum 2
        var read = new float[3];
        Assert.Equal(0f, LolcatsSparseRule.RecallError(new float[] { 1, 0 }, state, new float[] { 1, 2 }, read), 5);
        Assert.Equal(4f + 16f, LolcatsSparseRule.RecallError(new float[] { 1, 0 }, state, new float[] { -1, -2 }, read), 3);
        Assert.Equal(1f + 4f, LolcatsSparseRule.RecallError(new float[] { 0, 1 }, state, new float[] { 1, 2 }, read), 5);
        LolcatsSparseRule.Fold(new float[] { 0, 0.5f }, state, new float[] { 2, -2 });
        Assert.Equal(new float[] { 2, 4, 2, 1, -1, 0.5f }, state);
    }

    /// <summary>
    /// One slot, window 2 (entry i − 1 is offered after query i), a state holding value +1 on feature 0 and a slot of
    /// error 1. Entry 0 (feature 0, value +1) is recalled exactly: error 0, not kept, folded from query 2 on. Entry 1
    /// (feature 0, value −1) is recalled as +1: error 4·D, kept; the slot's old pair is folded from query 3 on.
    /// </summary>
    [Fact]
    public void APairTheStateRecallsBadlyIsKeptAndTheLoserIsFolded()
    {
        const int d = 2, t = 3; // F = 2 features
        // Pool: the slot (pool 0), then entries 0..2 (pool 1..3). Features [B=1, H=1, P=4, F], values [1, 1, 4, D].
        float[] features = { 0, 1, /**/ 1, 0, /**/ 1, 0, /**/ 0, 1 };
        float[] values = { 5, 5, /**/ 1, 1, /**/ -1, -1, /**/ 3, 3 };
        float[] state = { 1, 1, 1, 0, 0, 0 };
        var sel = LolcatsSparseRule.Simulate(1, 1, 1, 1, 2, 0, t, new long[] { 0 }, new float[] { 1f }, new long[] { 10, 11, 12 },
            new[] { true, true, true }, features, values, state, d);
        Assert.Equal(new long[] { 11 }, sel.SlotIndex);
        Assert.Equal(4f * d, sel.SlotScore[0], 4);
        Assert.Equal(new long[] { 2 }, sel.SlotPool);
        Assert.Equal(new[] { 3L, 2L, long.MaxValue, long.MaxValue }, sel.Fold);   // the old slot at 3, entry 0 at 2
        Assert.Equal(new long[] { 0, 0, 3, 0 }, sel.Enter);
        Assert.Equal(new long[] { 3, 0, 3, 0 }, sel.Exit);
        // Feature 0 gained entry 0 (+1); feature 1 the old slot (5).
        Assert.Equal(new float[] { 2, 2, 2, 5, 5, 1 }, sel.State);
    }

    [Fact]
    public void TokenByTokenDecodingEqualsFullForward()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = LolcatsConversionTests.Converted(teacher, Lin());
        using var plain = LolcatsConversionTests.Converted(teacher, Lin(sparse: 0));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 150, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        double effect = (full - plain.Forward(ids)).abs().max().item<float>();
        Assert.True(effect > 1e-3, $"the sparse cache changed nothing (max |Δ| {effect:E2})");

        // Prefill in uneven slices (aligned to no window, block or slot count), then single steps.
        using var cache = model.CreateCache();
        var parts = new List<Tensor>();
        int at = 0;
        foreach (int slice in new[] { 29, 22, 3, 17 })
        {
            parts.Add(model.Forward(ids.narrow(1, at, slice), cache));
            at += slice;
        }

        for (; at < 150; at++)
            parts.Add(model.Forward(ids.narrow(1, at, 1), cache));
        TensorAssert.RelClose("lolcats-sw sparse", full, cat(parts, 1), 1e-5);
    }

    /// <summary>With a slot for every pair nothing is ever folded: the linear state stays empty and the softmax covers the
    /// window and the slots, i.e. every earlier key — the converted model is the teacher, whatever its feature maps.</summary>
    [Fact]
    public void WithASlotForEveryPairTheLayerIsTheTeachersSoftmax()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = LolcatsConversionTests.Converted(teacher, Lin(sparse: 64));
        using var plain = LolcatsConversionTests.Converted(teacher, Lin(sparse: 0));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 60, 4);
        var expected = teacher.Forward(ids);
        TensorAssert.RelClose("sparse cache of 64 over 60 tokens", expected, model.Forward(ids), 1e-5);
        Assert.True((expected - plain.Forward(ids)).abs().max().item<float>() > 1e-3, "the plain layer should not be the teacher");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(77)]
    public void EngineEqualsTorchOverManySteps(int prefill)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = LolcatsConversionTests.Converted(teacher, Lin());
        using var engine = Engines.Create(model);
        var rng = new Random(2);
        var ids = Enumerable.Range(0, prefill + 400).Select(_ => rng.Next(3, model.Config.VocabSize)).ToArray();
        double diff = EngineEqualsTorchTests.MaxDifference(model, engine, ids, prefill);
        Assert.True(diff <= 1e-4, $"lolcats-sw sparse: max |Δlogit| = {diff:E2}");
    }

    /// <summary>An engine prefill in one go, in uneven pieces and as steps leaves the same logits.</summary>
    [Fact]
    public void EnginePrefillThenStepsEqualsSteps()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = LolcatsConversionTests.Converted(teacher, Lin());
        using var engine = Engines.Create(model);
        var rng = new Random(8);
        var ids = Enumerable.Range(0, 90).Select(_ => rng.Next(3, model.Config.VocabSize)).ToArray();
        using var stepped = engine.CreateSequence();
        float[] last = Array.Empty<float>();
        foreach (int id in ids)
            last = engine.Step(stepped, id).ToArray();
        using var prefilled = engine.CreateSequence();
        engine.Prefill(prefilled, ids.Take(41).ToArray());
        engine.Prefill(prefilled, ids.Skip(41).Take(30).ToArray());
        float[] other = Array.Empty<float>();
        foreach (int id in ids.Skip(71))
            other = engine.Step(prefilled, id).ToArray();
        double diff = last.Zip(other, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(diff <= 1e-4, $"prefill then steps vs steps: max |Δlogit| = {diff:E2}");
    }

    /// <summary>The engine's state is the same size after 100 and 100,000 tokens; the sparse cache adds exactly its slots.</summary>
    [Fact]
    public void StateBytesAreTheSameAt100And100kTokens()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin());
        using var plain = Converter.Convert(teacher, Lin(sparse: 0));
        using var engine = Engines.Create(model);
        using var plainEngine = Engines.Create(plain);
        int vocab = model.Config.VocabSize;
        var rng = new Random(5);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();
        using var at100 = engine.CreateSequence();
        engine.Prefill(at100, Tokens(100));
        engine.Step(at100, 7);
        using var at100k = engine.CreateSequence();
        engine.Prefill(at100k, Tokens(100_000));
        Assert.True(engine.Step(at100k, 7).ToArray().All(float.IsFinite));
        Assert.Equal(at100.StateBytes, at100k.StateBytes);

        using var plainSeq = plainEngine.CreateSequence();
        plainEngine.Prefill(plainSeq, Tokens(100));
        var c = model.Config;
        long slots = (long)c.NumHiddenLayers * c.NumKeyValueHeads * Slots;
        Assert.Equal(plainSeq.StateBytes + slots * (2L * c.HeadDim * 4 + 4 + 8), at100k.StateBytes); // keys, values, error, position

        // The TorchSharp cache holds the same slots and does not grow either.
        using var noGrad = no_grad();
        long TorchBytes(int tokens)
        {
            using var cache = model.CreateCache();
            model.Forward(Ids(vocab, tokens, 5, b: 1), cache);
            return Enumerable.Range(0, c.NumHiddenLayers).Sum(l => cache[l]!.StateBytes);
        }

        Assert.Equal(TorchBytes(100), TorchBytes(300));
    }

    /// <summary>N = 0 is the plain layer: a config without the key loads as N = 0, keeps no sparse cache, and its logits
    /// (forward, and decoding through the cache) are bit for bit those of the layer converted without the option.</summary>
    [Fact]
    public void WithoutSlotsTheLayerIsUnchangedBitForBit()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var lin = LolcatsConversionTests.Lin("lolcats-sw");
        var json = lin.ToJson();
        Assert.Equal(0, (int)json["sparse_cache"]!);
        json.Remove("sparse_cache");
        var raw = TinyModels.BaseJson();
        raw[LinearizationConfig.SectionName] = json;
        var loaded = LinearizationConfig.FromModel(LlamaConfig.FromJson(raw, "old config"))!;
        Assert.Equal(0, loaded.Lolcats.SparseCache);
        Assert.Equal(lin.Lolcats, loaded.Lolcats);

        using var a = LolcatsConversionTests.Converted(teacher, lin);
        using var b = LolcatsConversionTests.Converted(teacher, loaded);
        using var noGrad = no_grad();
        var ids = Ids(a.Config.VocabSize, 50, 2);
        Assert.True(a.Forward(ids).eq(b.Forward(ids)).all().item<bool>(), "N = 0 changed the logits");
        using var cache = b.CreateCache();
        b.Forward(ids.narrow(1, 0, 30), cache);
        Assert.All(Enumerable.Range(0, b.Config.NumHiddenLayers), l => Assert.Null(((LolcatsLayerCache)cache[l]!).Sparse));
    }

    [Fact]
    public void TheSparseCacheIsRefusedForTheTerraceAndTinyWindows()
    {
        Assert.Contains("lolcats-sw", Assert.Throws<LinearizeException>(() =>
            new LolcatsOptions { Shape = LolcatsWindowShape.Tk, SparseCache = 4 }.Validate(16)).Message);
        Assert.Contains("window", Assert.Throws<LinearizeException>(() => new LolcatsOptions { Window = 1, SparseCache = 4 }.Validate(16)).Message);
    }
}
