using Linearize.Caching;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Generation;

/// <summary>
/// Token-by-token generation with a decoding cache: the prompt is prefilled (in chunks, so a long prompt never
/// builds one huge attention matrix), then each new token costs one single-token forward pass.
/// </summary>
public sealed class Generator
{
    private readonly LlamaForCausalLM _model;

    public Generator(LlamaForCausalLM model, int prefillChunk = 512)
    {
        _model = model;
        PrefillChunk = prefillChunk;
    }

    /// <summary>Prompt tokens processed per forward pass during prefill.</summary>
    public int PrefillChunk { get; }

    /// <summary>
    /// Yields up to <paramref name="maxNewTokens"/> tokens after <paramref name="promptIds"/>. Stops after yielding a
    /// token in <paramref name="stopIds"/>.
    /// </summary>
    public IEnumerable<int> Generate(IReadOnlyList<int> promptIds, int maxNewTokens, Sampler sampler,
        IReadOnlySet<int>? stopIds = null, ModelCache? cache = null)
    {
        if (promptIds.Count == 0)
            throw new LinearizeException("the prompt has no tokens (not even BOS); nothing to condition on");
        bool ownCache = cache is null;
        cache ??= _model.CreateCache();
        try
        {
            int next;
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                Tensor? last = null;
                for (int start = 0; start < promptIds.Count; start += PrefillChunk)
                {
                    int n = Math.Min(PrefillChunk, promptIds.Count - start);
                    var ids = torch.tensor(promptIds.Skip(start).Take(n).Select(i => (long)i).ToArray()).unsqueeze(0);
                    last = _model.Forward(ids, cache)[0, -1];
                }

                next = sampler.Sample(last!);
            }

            for (int produced = 0; produced < maxNewTokens; produced++)
            {
                yield return next;
                if ((stopIds?.Contains(next) ?? false) || produced + 1 == maxNewTokens)
                    yield break;
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    var ids = torch.tensor(new long[] { next }).unsqueeze(0);
                    next = sampler.Sample(_model.Forward(ids, cache)[0, -1]);
                }
            }
        }
        finally
        {
            if (ownCache)
                cache.Dispose();
        }
    }
}
