using Linearize.Generation;
using Linearize.Generation.Chat;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Tests.Fixtures;
using Linearize.Tests.Serving;

namespace Linearize.Tests.Generation;

/// <summary>A conversation kept in the decoding state: turn two feeds only the closing of reply one and the new
/// message, and then answers exactly as a fresh prefill of the whole conversation would.</summary>
[Collection("Torch")]
public sealed class ChatSessionTests
{
    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    public void SecondTurnEqualsAFreshPrefillOfTheWholeConversation(string method)
    {
        using var model = TestServer.CreateModel(method);
        using var engine = Engines.Create(model, new EngineOptions { Threads = 1, BatchInvariant = true });
        var tok = new CharTokenizer(model.Config.VocabSize);
        var template = ChatTemplate.Create(ChatFormat.ChatMl); // short prompts: the character tokenizer spends a token per character
        var stops = new HashSet<int> { 2 };
        using var session = new ChatSession(engine, tok, template, stops, method == "teacher" ? model.Config.MaxPositionEmbeddings : null);
        using var sampler = new Sampler(SamplingOptions.Greedy);

        var reply1 = new List<int>();
        string text1 = string.Concat(session.Reply("hi", sampler, 12));
        var first = template.Encode(template.Render(new[] { new ChatMessage("user", "hi") }, true, 2), tok, atStart: true);
        long afterTurn1 = session.Position;
        string text2 = string.Concat(session.Reply("more", sampler, 12));
        int fed2 = session.LastFedTokens;

        // The reference: regenerate reply 1 token by token, then prefill everything fresh.
        using (var s = new Sampler(SamplingOptions.Greedy))
            reply1.AddRange(new EngineGenerator(engine).Generate(first, 12, s, stops).Where(t => !stops.Contains(t)));
        // ChatML closes the reply with <|im_end|>\n, then the new user turn and the assistant header.
        var closing = template.Encode(new[] { new ChatPromptPart("<|im_end|>\n", null) }, tok, atStart: false);
        var next = template.Encode(template.RenderNextTurn(session.Messages.Take(3).ToList(), 2, 2), tok, atStart: false);
        var all = first.Concat(reply1).Concat(closing).Concat(next).ToList();
        Assert.Equal(closing.Count + next.Count, fed2); // only the new turn was fed, never the history
        Assert.True(afterTurn1 >= first.Count + reply1.Count - 1);

        var detok = tok.CreateStreamingDetokenizer();
        string expected2;
        using (var s = new Sampler(SamplingOptions.Greedy))
            expected2 = string.Concat(new EngineGenerator(engine).Generate(all, 12, s, stops).Where(t => !stops.Contains(t)).Select(detok.Push));
        Assert.True(text1.Length > 0 && text2.Length > 0, "the tiny model answered nothing; the comparison would prove little");
        Assert.Equal(expected2, text2);
        Assert.Equal(text1, session.Messages[1].Content);
        Assert.Equal(4, session.Messages.Count);
    }
}
