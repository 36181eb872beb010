using Linearize.Generation.Chat;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Checkpoints.Configuration;
using Linearize.Tokenization;

namespace Linearize.Serving;

/// <summary>
/// What a server runs: the model's configuration, a batch-invariant <see cref="DecodeEngine"/> (prefill and every decode
/// step; no TorchSharp model is held), the tokenizer, the chat template, and the context rule — a model with softmax layers may not pass
/// <c>max_position_embeddings</c>; a fully linear one may.
/// </summary>
public sealed class ServedModel
{
    public ServedModel(string id, LlamaConfig config, DecodeEngine engine, TextTokenizer tokenizer, ChatTemplate template)
    {
        if (!engine.Options.BatchInvariant)
            throw new ArgumentException("a served engine must be batch-invariant, or a request's output would depend on its neighbours");
        Id = id;
        Config = config;
        Engine = engine;
        Tokenizer = tokenizer;
        Template = template;
        var stops = new HashSet<int>(config.EosTokenIds);
        if (tokenizer.EosId is int eos)
            stops.Add(eos);
        if (template.TurnEndText is string end && tokenizer.Encode(end, addBos: false) is [int endId] && tokenizer.IsSpecial(endId))
            stops.Add(endId);
        StopIds = stops;
        ContextLimit = MixerFactory.HasGrowingCache(config) ? config.MaxPositionEmbeddings : null;
    }

    /// <summary>The name clients pass as <c>model</c> and see in <c>/v1/models</c>.</summary>
    public string Id { get; }

    public LlamaConfig Config { get; }

    public DecodeEngine Engine { get; }

    public TextTokenizer Tokenizer { get; }

    public ChatTemplate Template { get; }

    /// <summary>Token ids that end a reply (EOS, and the chat format's turn end).</summary>
    public IReadOnlySet<int> StopIds { get; }

    /// <summary>Positions a sequence may not reach, or null for a fully linear model.</summary>
    public int? ContextLimit { get; }
}
