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
    /// Runs <paramref name="promptIds"/> through <paramref name="model"/> in chunks of <paramref name="chunk"/> tokens (so a
    /// long prompt never builds one huge attention matrix), filling <paramref name="cache"/>; returns the last position's
    /// logits <c>[V]</c> (in the caller's dispose scope). Call under <c>no_grad</c>.
    /// </summary>
    internal static Tensor Prefill(LlamaForCausalLM model, IReadOnlyList<int> promptIds, ModelCache cache, int chunk)
    {
        Tensor? last = null;
        for (int start = 0; start < promptIds.Count; start += chunk)
        {
            int n = Math.Min(chunk, promptIds.Count - start);
            var ids = torch.tensor(promptIds.Skip(start).Take(n).Select(i => (long)i).ToArray()).unsqueeze(0);
            last = model.Forward(ids, cache)[0, -1];
        }

        return last ?? throw new LinearizeException("the prompt has no tokens (not even BOS); nothing to condition on");
    }

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
                next = sampler.Sample(Prefill(_model, promptIds, cache, PrefillChunk));
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
