using System.Diagnostics;
using Linearize.Caching;
using Linearize.Generation;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Workflows.Benchmarks;

/// <summary>
/// Greedy single-token decoding timed after contexts of given lengths, on the engine (the default) or on TorchSharp's
/// forward with its cache. Measures only; the caller presents (tables, JSON, plots).
/// </summary>
public static class DecodeBenchmark
{
    /// <summary>Untimed steps after each context, before the timed ones: the first steps after a context touch state
    /// and scratch that nothing has touched yet.</summary>
    public const int WarmUpSteps = 4;

    /// <summary>Measures each model in turn; <paramref name="progress"/> gets (done, total) after every row.</summary>
    public static IReadOnlyList<DecodeRun> Run(IReadOnlyList<(string Name, ModelSource Source)> models, DecodeBenchmarkOptions options,
        IProgress<(int Done, int Total)>? progress = null)
    {
        options.Validate();
        var runs = new List<DecodeRun>();
        int total = models.Count * options.Contexts.Count;
        foreach (var (name, source) in models)
        {
            PeakMemory.Reset();
            var rows = new List<DecodeRow>();
            if (options.Engine is not null)
            {
                // The engine straight from the files: the benchmark holds what `generate` holds, no TorchSharp model.
                using var engine = Engines.Load(source, options.Engine);
                WarmUp(engine);
                foreach (int context in options.Contexts)
                {
                    rows.Add(MeasureEngine(engine, context, options));
                    progress?.Report((runs.Count * options.Contexts.Count + rows.Count, total));
                }

                runs.Add(new DecodeRun(name, string.Join("; ", Engines.DescribeMixers(engine.Config)), source.Path,
                    EngineOptions.FormatName(engine.Options.Weights), engine.WeightBytesPerStep, rows, PeakMemory.Bytes()));
                continue;
            }

            using var llama = ModelLoader.Load(source);
            foreach (int context in options.Contexts)
            {
                rows.Add(MeasureTorch(llama, context, options.Steps, options.PrefillChunk));
                progress?.Report((runs.Count * options.Contexts.Count + rows.Count, total));
            }

            runs.Add(new DecodeRun(name, string.Join("; ", llama.DescribeMixers()), source.Path, llama.DType.ToString().ToLowerInvariant(),
                llama.parameters().Sum(p => p.numel() * p.element_size()), rows, PeakMemory.Bytes()));
        }

        return runs;
    }

    /// <summary>Steps for a second before anything is timed: the JIT's tiered compilation, page faults of fresh buffers
    /// and libtorch's spinning OpenMP threads (after loading) all settle within it.</summary>
    public static void WarmUp(DecodeEngine engine)
    {
        using var seq = engine.CreateSequence();
        var watch = Stopwatch.StartNew();
        int token = 1;
        while (watch.Elapsed.TotalSeconds < 1.0 && seq.Position < 64)
            token = Sampler.ArgMax(engine.Step(seq, token));
    }

    /// <summary>Seconds for <paramref name="steps"/> single-token greedy TorchSharp steps after whatever
    /// <paramref name="cache"/> holds.</summary>
    public static double TimeGreedyDecode(LlamaForCausalLM llama, ModelCache cache, int steps)
    {
        using var noGrad = no_grad();
        var next = torch.tensor(new long[] { 1 }).view(1, 1);
        var watch = Stopwatch.StartNew();
        for (int s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var logits = llama.Forward(next, cache);
            next.Dispose();
            next = logits[0, -1].argmax().view(1, 1).DetachFromDisposeScope();
        }

        next.Dispose();
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>The engine: one context (synthetic or prefilled, fanned out to the batch), warm-up steps, then timed
    /// greedy steps.</summary>
    private static DecodeRow MeasureEngine(DecodeEngine engine, int context, DecodeBenchmarkOptions o)
    {
        DecodeSequence first;
        if (o.SyntheticFill)
        {
            first = engine.CreateSyntheticSequence(context, seed: context);
        }
        else
        {
            first = engine.CreateSequence();
            engine.Prefill(first, RandomTokens(engine.Config.VocabSize, context));
        }

        long contextState = first.StateBytes; // what holding this context costs, before the measured steps add to it
        int batch = o.Batch;
        var seqs = new DecodeSequence[batch];
        seqs[0] = first;
        for (int b = 1; b < batch; b++)
            seqs[b] = first.Clone();
        var tokens = Enumerable.Range(0, batch).Select(b => 1 + b).ToArray();
        try
        {
            for (int s = 0; s < WarmUpSteps; s++)
                Advance();
            long stateBytes = seqs.Sum(x => x.StateBytes);
            var profile = o.Profile ? new StepProfile() : null;
            engine.Profile = profile;
            var watch = Stopwatch.StartNew();
            for (int s = 0; s < o.Steps; s++)
                Advance();
            double seconds = watch.Elapsed.TotalSeconds;
            engine.Profile = null;
            long bytes = engine.WeightBytesPerStep + stateBytes;
            var (floor, paired) = o.ReadFloor ? Floor(bytes) : (null, null);
            return new DecodeRow(context, 1000 * seconds / o.Steps, batch * o.Steps / seconds, contextState, bytes, bytes * o.Steps / seconds / 1e9,
                floor, paired, profile?.PerPass());
        }
        finally
        {
            foreach (var x in seqs)
                x.Dispose();
        }

        // Steps and reads alternate, so both see the same load; medians, so one preempted pass does not decide.
        (double?, double?) Floor(long stepBytes)
        {
            int pairs = Math.Min(o.Steps, o.FloorPairs);
            var steps = new double[pairs];
            var reads = new double[pairs];
            for (int i = 0; i < pairs; i++)
            {
                var watch = Stopwatch.StartNew();
                Advance();
                steps[i] = watch.Elapsed.TotalSeconds;
                reads[i] = engine.TimeWeightRead();
            }

            double readMs = 1000 * Median(reads) * stepBytes / engine.WeightReader.Bytes;
            return (readMs, 1000 * Median(steps));
        }

        void Advance()
        {
            engine.Step(seqs, batch, tokens);
            for (int b = 0; b < batch; b++)
                tokens[b] = Sampler.ArgMax(engine.Logits(b));
        }
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>A cache holding <paramref name="context"/> random tokens (<see cref="RandomTokens"/>), prefilled in chunks.</summary>
    private static ModelCache PrefillRandom(LlamaForCausalLM llama, int context, int chunk)
    {
        using var noGrad = no_grad();
        var cache = llama.CreateCache();
        var ids = RandomTokens(llama.Config.VocabSize, context);
        for (int start = 0; start < context; start += chunk)
        {
            using var scope = NewDisposeScope();
            int len = Math.Min(chunk, context - start);
            using var block = torch.tensor(ids.AsSpan(start, len).ToArray().Select(x => (long)x).ToArray(), new long[] { 1, len }, ScalarType.Int64);
            llama.Forward(block, cache);
        }

        return cache;
    }

    /// <summary><paramref name="count"/> token ids drawn uniformly, seeded by the count: every path and every run decodes
    /// after the same context.</summary>
    private static int[] RandomTokens(int vocab, int count)
    {
        var random = new Random(count);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }

    /// <summary>The TorchSharp path: prefill, then timed single-token forwards with the cache.</summary>
    private static DecodeRow MeasureTorch(LlamaForCausalLM llama, int context, int steps, int chunk)
    {
        using var cache = PrefillRandom(llama, context, chunk);
        long stateBytes = cache.StateBytes;
        double seconds = TimeGreedyDecode(llama, cache, steps);
        long bytes = llama.parameters().Sum(p => p.numel() * p.element_size()) + stateBytes;
        return new DecodeRow(context, 1000 * seconds / steps, steps / seconds, stateBytes, bytes, bytes * steps / seconds / 1e9);
    }
}
