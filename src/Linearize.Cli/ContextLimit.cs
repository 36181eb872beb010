using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;

namespace Linearize.Cli;

/// <summary>
/// One rule for how far a command may read. A model with any full softmax layer is bound by its
/// <c>max_position_embeddings</c>: going beyond is an error, in every command. A model whose every layer keeps a
/// fixed-size state has no hard limit — its recurrent state has none, and its window branch only ever sees the last
/// w positions — but beyond the teacher's context it runs at RoPE positions the teacher never trained on, so quality
/// there is unmeasured: a one-line note says so on stderr.
/// </summary>
public static class ContextLimit
{
    public static void Check(LlamaConfig config, long tokens, string what)
    {
        int limit = config.MaxPositionEmbeddings;
        if (tokens <= limit)
            return;
        if (MixerFactory.HasGrowingCache(config))
            throw new LinearizeException($"{what} = {tokens} exceeds the model's context of {limit} positions (it has softmax attention layers)");
        Console.Error.WriteLine($"note: {what} = {tokens} goes beyond the teacher's {limit} positions; this linear model has no hard limit, " +
                                "but quality there is unmeasured (RoPE positions the teacher never saw) — check it with eval ppl --rolling");
    }
}
