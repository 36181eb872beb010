using Linearize.Inference;
using Linearize.Inference.Kernels;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using static TorchSharp.torch;

namespace Linearize.Tests.Inference;

/// <summary>
/// Engine prefill against its references: the TorchSharp forward pass over the whole prompt (logits of every row within
/// 1e-4), then engine steps against TorchSharp steps (the state prefill leaves is the one stepping builds); a prompt cut
/// into uneven blocks and prompts prefilled together give bit-identical results to one prompt in one block.
/// </summary>
[Collection("Torch")]
public sealed class EnginePrefillTests
{
    private const double Tolerance = 1e-4;

    private static int[] Ids(int vocab, int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(3, vocab)).ToArray();
    }

    private static LlamaForCausalLM Model(string method, string variant)
    {
        using var teacher = TinyModels.Create(variant);
        if (method == "teacher")
            return TinyModels.Create(variant);
        if (method.StartsWith("lolcats-", StringComparison.Ordinal))
            return LolcatsConversionTests.Converted(teacher, LolcatsConversionTests.Lin(method, window: 8));
        return Converter.Convert(teacher, LigerConversionTests.Lin(method, window: 8, sinks: method == "swa" ? 2 : 0));
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (var variant in TinyModels.Variants())
            yield return new object[] { "teacher", variant[0] };
        foreach (var method in new[] { "liger-gla", "liger-hgrn2", "liger-gsa", "liger-mamba2", "liger-mlstm", "liger-retention", "liger-gdn", "liger-deltanet", "swa", "lolcats-sw", "lolcats-tk" })
            yield return new object[] { method, method.EndsWith("mlstm", StringComparison.Ordinal) ? "qwen2-bias" : "gqa-untied" };
    }

    /// <summary>A prompt of 77 tokens (not a multiple of any block, tile or window) in blocks of 20: every row's logits
    /// against TorchSharp's forward pass, then 40 steps against TorchSharp's steps.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void PrefillEqualsTheTorchForwardPassAndContinuesExactly(string method, string variant)
    {
        using var model = Model(method, variant);
        using var engine = Engines.Create(model, new EngineOptions { PrefillChunk = 20, Threads = 2 });
        const int prompt = 77, steps = 40;
        var ids = Ids(model.Config.VocabSize, prompt + steps, 11);
        int vocab = model.Config.VocabSize;
        using var noGrad = no_grad();
        using var cache = model.CreateCache();
        float[] expected;
        using (var scope = NewDisposeScope())
            expected = model.Forward(tensor(ids.Take(prompt).Select(i => (long)i).ToArray()).view(1, -1), cache)[0].data<float>().ToArray();

        using var seq = engine.CreateSequence();
        var actual = new float[prompt * vocab];
        engine.Prefill(seq, ids.AsSpan(0, prompt), 0, actual);
        Assert.Equal(prompt, seq.Position);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(expected.Max() - expected.Min() > 0.5, "logits barely vary; the comparison would prove nothing");
        Assert.True(worst <= Tolerance, $"{method} on {variant}: prefill max |Δlogit| = {worst:E2}");

        for (int t = prompt; t < ids.Length; t++)
        {
            using var scope = NewDisposeScope();
            var step = model.Forward(tensor(new long[] { ids[t] }).view(1, 1), cache)[0, 0].data<float>().ToArray();
            var got = engine.Step(seq, ids[t]);
            for (int v = 0; v < vocab; v++)
                worst = Math.Max(worst, Math.Abs(step[v] - got[v]));
        }

        Assert.True(worst <= Tolerance, $"{method} on {variant}: steps after prefill max |Δlogit| = {worst:E2}");
    }

    /// <summary>Blocks of any size give the same bits: each row's products, attention blocks and recurrent order do not
    /// depend on where the prompt was cut, or on other prompts in the same block.</summary>
    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    [InlineData("liger-gsa")]
    [InlineData("liger-gdn")]
    [InlineData("lolcats-tk")]
    [InlineData("swa")]
    public void UnevenBlocksAndBatchedPromptsAreBitIdenticalToOneBlock(string method)
    {
        using var model = Model(method, "gqa-untied");
        int vocab = model.Config.VocabSize;
        var prompts = new[] { Ids(vocab, 150, 1), Ids(vocab, 3, 2), Ids(vocab, 71, 3), Ids(vocab, 1, 4) };
        var whole = new float[prompts.Length][];
        using (var engine = Engines.Create(model, new EngineOptions { PrefillChunk = 4096 }))
            for (int i = 0; i < prompts.Length; i++)
            {
                using var seq = engine.CreateSequence();
                whole[i] = engine.Prefill(seq, prompts[i]).ToArray();
                whole[i] = whole[i].Concat(engine.Step(seq, 5).ToArray()).ToArray(); // and the state it left
            }

        // The same prompts in uneven slices (7, 1, 30, …) on a 13-row block engine.
        using (var engine = Engines.Create(model, new EngineOptions { PrefillChunk = 13, Threads = 2 }))
        {
            int[] cuts = { 7, 1, 30, 2, 64 };
            for (int i = 0; i < prompts.Length; i++)
            {
                using var seq = engine.CreateSequence();
                float[] last = Array.Empty<float>();
                for (int at = 0, k = 0; at < prompts[i].Length; k++)
                {
                    int n = Math.Min(cuts[k % cuts.Length], prompts[i].Length - at);
                    last = engine.Prefill(seq, prompts[i].AsSpan(at, n)).ToArray();
                    at += n;
                }

                var got = last.Concat(engine.Step(seq, 5).ToArray()).ToArray();
                Assert.True(got.SequenceEqual(whole[i]), $"{method}: prompt {i} cut unevenly differs from one block");
            }

            // All four prompts together, sharing blocks.
            var seqs = prompts.Select(_ => engine.CreateSequence()).ToArray();
            var batched = engine.Prefill(seqs, prompts);
            for (int i = 0; i < prompts.Length; i++)
            {
                var got = batched[i].Concat(engine.Step(seqs[i], 5).ToArray()).ToArray();
                Assert.True(got.SequenceEqual(whole[i]), $"{method}: prompt {i} prefilled beside others differs from alone");
                seqs[i].Dispose();
            }
        }
    }

    /// <summary>The tiled product against its naive twin: every format and vector level this CPU has, token counts around
    /// the 6-token AVX2 tile and AVX-512's 16/32/48-token panels, column counts around the vector widths and past the
    /// 512-column depth slice.</summary>
    [Fact]
    public unsafe void TiledProductEqualsNaiveTwin()
    {
        foreach (var isa in new[] { KernelIsa.Avx2, KernelIsa.Avx512 }.Where(KernelIsaSupport.IsSupported))
        foreach (var format in Enum.GetValues<WeightFormat>())
            foreach (int cols in new[] { 8, 16, 33, 172, 768, 1030, 2100 })
                foreach (int count in new[] { 1, 5, 6, 7, 8, 9, 13, 23, 48, 49, 100 })
                {
                    const int rows = 37; // not a multiple of the 16-row block or the 2-row tile
                    var rng = new Random(cols * 31 + count);
                    var weights = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                    var x = Enumerable.Range(0, count * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                    using var w = PackedMatrix.Pack(weights, rows, cols, format);
                    var expected = NaiveMatVec.Multiply(w, x, count);
                    var y = new float[count * rows];
                    using var q = new Q8Activations();
                    fixed (float* xp = x, yp = y)
                    {
                        if (format == WeightFormat.Q8)
                        {
                            q.Quantize(xp, cols, count, cols);
                            MatMat.RowsQ8(w, q, count, yp, rows, 0, 16, isa);
                            MatMat.RowsQ8(w, q, count, yp, rows, 16, rows, isa);
                            for (int b = 0; b < count; b++)
                                q.DequantizeRow(b, x.AsSpan(b * cols, cols)); // the activations multiplied, for the bound
                        }
                        else
                        {
                            MatMat.Rows(w, xp, cols, count, yp, rows, 0, 16, isa);
                            MatMat.Rows(w, xp, cols, count, yp, rows, 16, rows, isa);
                        }
                    }

                    var dense = w.Dequantize();
                    for (int b = 0; b < count; b++)
                        for (int r = 0; r < rows; r++)
                        {
                            double magnitude = 0;
                            for (int c = 0; c < cols; c++)
                                magnitude += Math.Abs(dense[r * cols + c] * x[b * cols + c]);
                            double err = Math.Abs(y[b * rows + r] - expected[b * rows + r]);
                            Assert.True(err <= 1e-5 * magnitude + 1e-30,
                                $"{isa} {format} cols {cols} count {count} row {r} token {b}: |{y[b * rows + r]} − {expected[b * rows + r]}| = {err:E2}");
                        }
                }
    }
}
