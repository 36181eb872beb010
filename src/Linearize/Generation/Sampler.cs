using Linearize.Modeling;
using Linearize.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Generation;

/// <summary>
/// Picks the next token from logits: argmax, or temperature → top-k → top-p → multinomial with a seeded generator
/// (the order of transformers' logits warpers).
/// </summary>
public sealed class Sampler : IDisposable
{
    private readonly SamplingOptions _options;
    private readonly torch.Generator _generator;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _generator = new torch.Generator(options.Seed);
    }

    /// <summary>Next token for <paramref name="logits"/> <c>[V]</c> (float32).</summary>
    public int Sample(Tensor logits)
    {
        using var scope = NewDisposeScope();
        if (_options.IsGreedy)
            return (int)logits.argmax().item<long>();

        var scores = logits.to(ScalarType.Float32).Over(_options.Temperature);
        if (_options.TopK > 0 && _options.TopK < scores.shape[0])
        {
            var (topValues, _) = scores.topk(_options.TopK, dim: 0, largest: true, sorted: true);
            var threshold = topValues[-1];
            scores = scores.MaskedFill(scores < threshold, float.NegativeInfinity);
        }

        if (_options.TopP < 1.0)
        {
            var (sorted, order) = scores.sort(dim: 0, descending: true, stable: true);
            var cumulative = sorted.softmax(0).cumsum(0);
            // Drop a token when the tokens before it already reach P; the most likely token always stays.
            var drop = (cumulative - sorted.softmax(0)).Ge(_options.TopP);
            var dropOriginal = torch.zeros_like(drop).scatter(0, order, drop);
            scores = scores.MaskedFill(dropOriginal, float.NegativeInfinity);

        }

        var probs = scores.softmax(0);
        return (int)torch.multinomial(probs, 1, replacement: false, generator: _generator).item<long>();
    }

    /// <summary>Next token for float32 logits <c>[V]</c> held outside TorchSharp (the decode engine's). Greedy picks the
    /// first maximum, as <c>argmax</c> does; sampling goes through the tensor path, so a seed gives the same draws.</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_options.IsGreedy)
            return ArgMax(logits);
        using var scope = NewDisposeScope();
        return Sample(torch.tensor(logits.ToArray()));
    }

    /// <summary>Index of the first largest value (NaN never wins).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best])
                best = i;
        return best;
    }

    public void Dispose() => _generator.Dispose();
}
