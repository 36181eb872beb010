using Linearize.Inference;
using Linearize.Modeling.Llama;
using static TorchSharp.torch;

namespace Linearize.Generation;

/// <summary>
/// Generation on the <see cref="DecodeEngine"/>: the prompt is prefilled by the TorchSharp model in chunks (batched
/// matrix products beat one-token steps by far there), its cache is handed to the engine, and every new token is one
/// engine step. Yields the same tokens as <see cref="Generator"/> up to float32 rounding of the logits.
/// </summary>
public sealed class EngineGenerator
{
    private readonly LlamaForCausalLM _model;
    private readonly DecodeEngine _engine;

    public EngineGenerator(LlamaForCausalLM model, DecodeEngine engine, int prefillChunk = 512)
    {
        _model = model;
        _engine = engine;
        PrefillChunk = prefillChunk;
    }

    public int PrefillChunk { get; }

    /// <summary>Prefills <paramref name="promptIds"/> with TorchSharp and hands the state to the engine; returns the
    /// sequence and the logits after the last prompt token.</summary>
    public (DecodeSequence Sequence, float[] Logits) Prefill(IReadOnlyList<int> promptIds)
    {
        if (promptIds.Count == 0)
            throw new LinearizeException("the prompt has no tokens (not even BOS); nothing to condition on");
        using var noGrad = no_grad();
        using var cache = _model.CreateCache();
        using var scope = NewDisposeScope();
        var logits = Generator.Prefill(_model, promptIds, cache, PrefillChunk).data<float>().ToArray();
        return (_engine.Import(cache), logits);
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
