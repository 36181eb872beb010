using Linearize.Inference;

namespace Linearize.Generation;

/// <summary>
/// Generation on the <see cref="DecodeEngine"/>: the prompt is prefilled on the engine in blocks (matrix × matrix
/// products), then every new token is one engine step. Yields the same tokens as the TorchSharp <see cref="Generator"/>
/// up to float32 rounding of the logits.
/// </summary>
public sealed class EngineGenerator
{
    private readonly DecodeEngine _engine;

    public EngineGenerator(DecodeEngine engine) => _engine = engine;

    /// <summary>Prefills <paramref name="promptIds"/> into a fresh sequence; returns it and the logits after the last
    /// prompt token.</summary>
    public (DecodeSequence Sequence, float[] Logits) Prefill(IReadOnlyList<int> promptIds)
    {
        if (promptIds.Count == 0)
            throw new LinearizeException("the prompt has no tokens (not even BOS); nothing to condition on");
        var sequence = _engine.CreateSequence();
        try
        {
            var logits = _engine.Prefill(sequence, promptIds as int[] ?? promptIds.ToArray()).ToArray();
            return (sequence, logits);
        }
        catch
        {
            sequence.Dispose();
            throw;
        }
    }

    /// <summary>Yields up to <paramref name="maxNewTokens"/> tokens; stops after yielding one in <paramref name="stopIds"/>.</summary>
    public IEnumerable<int> Generate(IReadOnlyList<int> promptIds, int maxNewTokens, Sampler sampler, IReadOnlySet<int>? stopIds = null)
    {
        var (sequence, logits) = Prefill(promptIds);
        using (sequence)
        {
            int next = sampler.Sample(logits);
            for (int produced = 0; produced < maxNewTokens; produced++)
            {
                yield return next;
                if ((stopIds?.Contains(next) ?? false) || produced + 1 == maxNewTokens)
                    yield break;
                next = sampler.Sample(_engine.Step(sequence, next));
            }
        }
    }
}
