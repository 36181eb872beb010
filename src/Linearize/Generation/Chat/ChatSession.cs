using Linearize.Inference;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;

namespace Linearize.Generation.Chat;

/// <summary>
/// A conversation kept in one <see cref="DecodeSequence"/>: the first turn is prefilled on the engine, and
/// every later turn feeds only what is new — the closing of the last reply and the new user message — so a linear
/// model never re-reads the conversation (its state is all the history it needs; a softmax model's KV cache grows
/// instead, up to its context).
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly EngineGenerator _generator;
    private readonly DecodeEngine _engine;
    private readonly TextTokenizer _tokenizer;
    private readonly List<ChatMessage> _messages = new();
    private readonly IReadOnlySet<int> _stopIds;
    private DecodeSequence? _sequence;

    public ChatSession(DecodeEngine engine, TextTokenizer tokenizer, ChatTemplate template, IReadOnlySet<int> stopIds,
        long? contextLimit)
    {
        _generator = new EngineGenerator(engine);
        _engine = engine;
        _tokenizer = tokenizer;
        Template = template;
        _stopIds = stopIds;
        ContextLimit = contextLimit;
    }

    public ChatTemplate Template { get; }

    /// <summary>Positions the model may not pass (softmax models), or null.</summary>
    public long? ContextLimit { get; }

    public IReadOnlyList<ChatMessage> Messages => _messages;

    /// <summary>Tokens the state has seen.</summary>
    public long Position => _sequence?.Position ?? 0;

    /// <summary>Bytes of decoding state the conversation holds.</summary>
    public long StateBytes => _sequence?.StateBytes ?? 0;

    /// <summary>Tokens fed for the last turn (prompt side), and how many the reply produced.</summary>
    public int LastFedTokens { get; private set; }

    public int LastReplyTokens { get; private set; }

    /// <summary><c>stop</c>, <c>length</c> (the token budget or the context), or <c>cancelled</c>.</summary>
    public string LastFinishReason { get; private set; } = "";

    /// <summary>Opens a new conversation with a system message (it is fed with the first user turn).</summary>
    public void SeedSystem(string text)
    {
        if (_sequence is not null || _messages.Count > 0)
            throw new InvalidOperationException("a system message only opens a conversation");
        _messages.Add(new ChatMessage("system", text));
    }

    /// <summary>Forgets the conversation.</summary>
    public void Reset()
    {
        _sequence?.Dispose();
        _sequence = null;
        _messages.Clear();
    }

    /// <summary>Streams the reply to <paramref name="userText"/> as text pieces; the reply joins the history, also when
    /// <paramref name="cancel"/> stops it early.</summary>
    public IEnumerable<string> Reply(string userText, Sampler sampler, int maxNewTokens, CancellationToken cancel = default)
    {
        if (maxNewTokens < 1)
            throw new LinearizeException($"max new tokens must be at least 1, got {maxNewTokens}");
        _messages.Add(new ChatMessage("user", userText));
        float[] firstLogits;
        if (_sequence is null)
        {
            var ids = Template.Encode(Template.Render(_messages, addGenerationPrompt: true, _tokenizer.EosId), _tokenizer, atStart: true);
            CheckRoom(ids.Count);
            (_sequence, firstLogits) = _generator.Prefill(ids);
            LastFedTokens = ids.Count;
        }
        else
        {
            // The last reply's own stop token was sampled but never fed: close its turn the way the template writes it.
            var parts = new List<ChatPromptPart>();
            if (Template.TurnEndText is string end)
                parts.Add(new ChatPromptPart(end + Template.AfterTurnEnd, null));
            else if (_tokenizer.EosId is int eos)
                parts.Add(new ChatPromptPart(null, eos));
            parts.AddRange(Template.RenderNextTurn(_messages, _messages.Count - 1, _tokenizer.EosId));
            var ids = Template.Encode(parts, _tokenizer, atStart: false);
            CheckRoom(ids.Count);
            firstLogits = _engine.Prefill(_sequence, ids.ToArray()).ToArray();
            LastFedTokens = ids.Count;
        }

        var detok = _tokenizer.CreateStreamingDetokenizer();
        var reply = new System.Text.StringBuilder();
        LastReplyTokens = 0;
        LastFinishReason = "length";
        int next = sampler.Sample(firstLogits);
        while (true)
        {
            if (cancel.IsCancellationRequested)
            {
                LastFinishReason = "cancelled";
                break;
            }

            if (_stopIds.Contains(next))
            {
                LastFinishReason = "stop";
                break;
            }

            LastReplyTokens++;
            string piece = detok.Push(next);
            reply.Append(piece);
            if (piece.Length > 0)
                yield return piece;
            if (LastReplyTokens >= maxNewTokens || (ContextLimit is long limit && _sequence.Position + 1 >= limit))
            {
                _engine.Step(_sequence, next); // the reply's last token belongs to the history
                break;
            }

            next = sampler.Sample(_engine.Step(_sequence, next));
        }

        string tail = detok.Flush();
        reply.Append(tail);
        if (tail.Length > 0)
            yield return tail;
        _messages.Add(new ChatMessage("assistant", reply.ToString()));
    }

    private void CheckRoom(int newTokens)
    {
        if (ContextLimit is long limit && Position + newTokens >= limit)
            throw new LinearizeException(
                $"the conversation would reach {Position + newTokens} tokens, past this model's context of {limit} positions (it has softmax attention layers); /reset to start over");
    }

    public void Dispose() => _sequence?.Dispose();
}
