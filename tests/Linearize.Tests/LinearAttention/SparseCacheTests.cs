using Linearize.Caching;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Tests.Inference;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>
/// The sparse global cache of Liger layers (LoLA; docs/METHODS.md §1.7): the selection rule on hand-made cases, decoding
/// equals the forward pass with it, the engine equals TorchSharp over 1,000 steps, and the state does not grow.
/// </summary>
[Collection("Torch")]
public sealed class SparseCacheTests
{
    private const int Slots = 4;

    private static LinearizationConfig Lin(string method, int sparse = Slots, int window = 8, bool learned = false)
    {
        var lin = LigerConversionTests.Lin(method, window: window);
        return lin with { Liger = lin.Liger with { SparseCache = sparse, Gate = learned ? LigerGate.Learned : LigerGate.Keys } };
    }

    /// <summary>The learned gate starts from the pooled keys, the same for every query head of a group; random rows make
    /// the heads of a group decay differently, which is what the group-mean recall error is for.</summary>
    private static LlamaForCausalLM Convert(LlamaForCausalLM teacher, LinearizationConfig lin)
    {
        var model = Converter.Convert(teacher, lin);
        if (!lin.Liger.HasLearnedGate)
            return model;
        using var g = new torch.Generator(11);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (name.EndsWith("g_proj.weight", StringComparison.Ordinal))
                p.PlusInPlace(randn(p.shape, generator: g).Times(0.5).to(p.dtype));
        return model;
    }

    private static Tensor Ids(long vocab, int t, ulong seed, int b = 2)
    {
        using var g = new torch.Generator(seed);
        return randint(3, vocab, new long[] { b, t }, dtype: ScalarType.Int64, generator: g);
    }

    [Fact]
    public void OfferFillsEmptySlotsThenReplacesTheSmallestError()
    {
        long[] index = { -1, -1 };
        float[] scores = { 0, 0 };
        Assert.Equal(0, SparseCacheRule.Offer(index, scores, 10, 5f));
        Assert.Equal(1, SparseCacheRule.Offer(index, scores, 11, 1f)); // an empty slot takes any error
        Assert.Equal(-1, SparseCacheRule.Offer(index, scores, 12, 0.5f)); // recalled better than both kept pairs: dropped
        Assert.Equal(1, SparseCacheRule.Offer(index, scores, 13, 3f)); // replaces pair 11 (error 1)
        Assert.Equal(new long[] { 10, 13 }, index);
        Assert.Equal(-1, SparseCacheRule.Offer(index, scores, 14, float.NaN));
    }

    [Fact]
    public void TiesKeepTheNewerPairAndEvictTheOlder()
    {
        long[] index = { 7, 3 };
        float[] scores = { 2f, 2f };
        Assert.Equal(1, SparseCacheRule.Offer(index, scores, 20, 2f)); // equal errors: pair 3 (older) goes, pair 20 stays
        Assert.Equal(new long[] { 7, 20 }, index);
        Assert.Equal(0, SparseCacheRule.Offer(index, scores, 21, 2f)); // now pair 7 is the oldest of the tied
        Assert.Equal(new long[] { 21, 20 }, index);
    }

    /// <summary>Simulating a call over T tokens leaves the slots where offering the same pairs one by one does, and a
    /// pair is visible exactly from the query after it left the window until the query after it was replaced.</summary>
    [Fact]
    public void SimulatedCallEqualsOfferingPairByPair()
    {
        const int ring = 3, t = 40, n = 2;
        var rng = new Random(3);
        var errors = Enumerable.Range(0, t).Select(_ => (float)rng.NextDouble()).ToArray();
        var sel = SparseCacheRule.Simulate(1, 1, n, ring, 0, t, new long[] { -1, -1 }, new float[n], new float[ring], new bool[ring],
            errors, Enumerable.Repeat(true, t).ToArray());
        long[] index = { -1, -1 };
        float[] scores = new float[n];
        for (int i = 0; i < t; i++)
        {
            // Members seen by query i: the slots after the offers of queries < i.
            var members = Enumerable.Range(0, sel.Pool).Where(p => sel.Enter[p] <= i && i < sel.Exit[p]).Select(p => (long)(p - n - ring)).OrderBy(p => p);
            Assert.Equal(index.Where(p => p >= 0).OrderBy(p => p), members);
            if (i - ring >= 0)
                SparseCacheRule.Offer(index, scores, i - ring, errors[i - ring]);
        }

        Assert.Equal(index, sel.SlotIndex);
        Assert.Equal(scores, sel.SlotScore);
    }

    /// <summary>
    /// A hand-made layer: keys one-hot in the feature map (k = 20·e_c, so φ(k) ≈ e_c), values free. Pair 0 (channel 0)
    /// and pair 3 (channel 2) are alone on their channel, so the state recalls them almost exactly; pair 2 shares channel 1
    /// with pair 1 but holds another value, so the state recalls a blend — a large error. With one slot, window 2 (every
    /// pair leaves after one more query), pair 2 is the one kept, by decoding and by the forward pass alike.
    /// </summary>
    [Fact]
    public void APairTheStateRecallsBadlyIsKeptAndAWellRecalledOneIsNot()
    {
        var json = TinyModels.BaseJson(layers: 1, hidden: 64, heads: 4, kvHeads: 2);
        var config = LlamaConfig.FromJson(json, "sparse rule test");
        using var layer = new LigerAttention(config, 0, new LigerOptions { Window = 2, SparseCache = 1 });
        var host = (IProjectionHost)layer;
        using (no_grad())
        {
            foreach (var name in new[] { "q_proj", "k_proj", "v_proj" })
                ((TorchSharp.Modules.Linear)host.GetProjection(name)).weight!.zero_();
            var k = ((TorchSharp.Modules.Linear)host.GetProjection("k_proj")).weight!; // [32, 64]: k = 20·x[0:32]
            var v = ((TorchSharp.Modules.Linear)host.GetProjection("v_proj")).weight!; // v = x[32:64]
            for (int i = 0; i < 32; i++)
            {
                k[i, i] = 20f;
                v[i, 32 + i] = 1f;
            }
        }

        // Token = key channel (both KV heads) + a value pattern.
        Tensor Token(int channel, float value)
        {
            var x = zeros(64);
            x[channel] = 1f;
            x[16 + channel] = 1f;
            x.narrow(0, 32, 32).FillWith(value);
            return x;
        }

        var rows = stack(new[] { Token(0, 1f), Token(1, 1f), Token(1, -1f), Token(2, 1f), Token(3, 1f), Token(4, 1f) }).unsqueeze(0);
        using var rope = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.RopeScaling);
        long[] Kept(int chunk)
        {
            using var cache = new ModelCache(1);
            using var noGrad = no_grad();
            for (int start = 0; start < 6; start += chunk)
            {
                var positions = TorchArithmetic.Arange(start, start + chunk, ScalarType.Int64).unsqueeze(0);
                var (cos, sin) = rope.Get(positions, ScalarType.Float32);
                layer.forward(rows.narrow(1, start, chunk), new AttentionContext(positions, cos, sin, start, null, cache));
                cache.Advance(chunk);
            }

            var sparse = ((LinearLayerCache)cache[0]!).Sparse!;
            var errors = sparse.Score!.data<float>().ToArray();
            Assert.All(errors, e => Assert.True(e > 0.5f, $"the kept pair's error {e} should be large"));
            return sparse.Index!.data<long>().ToArray(); // [1, 2, 1]
        }

        Assert.Equal(new long[] { 2, 2 }, Kept(6)); // forward pass over all six tokens
        Assert.Equal(new long[] { 2, 2 }, Kept(1)); // token by token
    }

    [Theory]
    [InlineData("liger-gla")]
    [InlineData("liger-hgrn2")]
    [InlineData("liger-mamba2")]
    [InlineData("liger-gdn")]
    [InlineData("liger-deltanet")]
    [InlineData("liger-gla", true)]
    [InlineData("liger-mamba2", true)]
    [InlineData("liger-gdn", true)]
    public void TokenByTokenDecodingEqualsFullForward(string method, bool learned = false)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Convert(teacher, Lin(method, learned: learned));
        using var plain = Convert(teacher, Lin(method, sparse: 0, learned: learned));
        using var noGrad = no_grad();
        var ids = Ids(model.Config.VocabSize, 150, 1);
        var full = model.Forward(ids);
        Assert.True(full.isfinite().all().item<bool>());
        double effect = (full - plain.Forward(ids)).abs().max().item<float>();
        Assert.True(effect > 1e-3, $"{method}: the sparse cache changed nothing (max |Δ| {effect:E2})");

        using var cache = model.CreateCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 70), cache) }; // chunked prefill, then steps
        for (int t = 70; t < 150; t++)
            parts.Add(model.Forward(ids.narrow(1, t, 1), cache));
        TensorAssert.RelClose(method, full, cat(parts, 1), 1e-5);

        using var stepCache = model.CreateCache();
        var steps = Enumerable.Range(0, 40).Select(t => model.Forward(ids.narrow(1, t, 1), stepCache)).ToList();
        TensorAssert.RelClose(method + " steps", full.narrow(1, 0, 40), cat(steps, 1), 1e-5);
    }

    [Theory]
    [InlineData("liger-gla", 0)]
    [InlineData("liger-gla", 77)]
    [InlineData("liger-retention", 0)]
    [InlineData("liger-gdn", 77)]
    [InlineData("liger-gla", 77, true)]
    [InlineData("liger-retention", 0, true)]
    public void EngineEqualsTorchOverAThousandSteps(string method, int prefill, bool learned = false)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Convert(teacher, Lin(method, learned: learned));
        using var engine = Engines.Create(model);
        var rng = new Random(2);
        var ids = Enumerable.Range(0, prefill + 1000).Select(_ => rng.Next(3, model.Config.VocabSize)).ToArray();
        double diff = EngineEqualsTorchTests.MaxDifference(model, engine, ids, prefill);
        Assert.True(diff <= 1e-4, $"{method}: max |Δlogit| = {diff:E2}");
    }

    /// <summary>The engine's state is the same size after 100 and 100,000 tokens, and exactly the TorchSharp cache's.</summary>
    [Fact]
    public void StateBytesAreTheSameAt100And100kTokens()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, Lin("liger-gla"));
        using var plain = Converter.Convert(teacher, Lin("liger-gla", sparse: 0));
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

        using var noGrad = no_grad();
        using var cache = model.CreateCache();
        model.Forward(Ids(vocab, 100, 5, b: 1), cache);
        model.Forward(Ids(vocab, 1, 6, b: 1), cache);
        long torchBytes = Enumerable.Range(0, model.Config.NumHiddenLayers).Sum(l =>
        {
            var c = (LinearLayerCache)cache[l]!;
            return c.State!.numel() * 4 + 2 * c.Window.Context()!.Value.Keys.numel() * 4 + c.Sparse!.StateBytes;
        });
        Assert.Equal(torchBytes, at100k.StateBytes);

        using var plainSeq = plainEngine.CreateSequence();
        plainEngine.Prefill(plainSeq, Tokens(100));
        var c0 = model.Config;
        long slots = (long)c0.NumHiddenLayers * c0.NumKeyValueHeads * Slots;
        long expectedExtra = slots * (2L * c0.HeadDim * 4 + 4 + 8) // slot keys, values, error, position
                             + (long)c0.NumHiddenLayers * c0.NumKeyValueHeads * (8 - 1) * 4 // ring errors
                             + (long)c0.NumHiddenLayers * c0.NumAttentionHeads * c0.HeadDim * 4; // key-sum column
        Assert.Equal(plainSeq.StateBytes + expectedExtra, at100k.StateBytes);
    }
}
