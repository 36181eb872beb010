using Linearize.Generation.Chat;
using Linearize.Tests.Fixtures;
using Linearize.Tokenization;

namespace Linearize.Tests.Generation;

/// <summary>
/// The built-in chat formats against the Jinja templates they stand for: Meta's Llama 3 template (the one shipped in
/// ../shared/models/llama3-tokenizer), Qwen2's ChatML and SmolLM2's ChatML. The expected strings are what Jinja
/// renders from those templates (worked by hand from each template's text, which is quoted here).
/// </summary>
public sealed class ChatTemplateTests
{
    private const string Llama3Jinja =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";

    private const string Qwen2Jinja =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private const string SmolLm2Jinja =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly ChatMessage[] Conversation =
    {
        new("user", "  Hi there!\n"),
        new("assistant", "Hello."),
        new("user", "Tell me a joke."),
    };

    [Fact]
    public void Llama3TrimsContentWritesBosOnceAndAlwaysOpensTheAssistantTurn()
    {
        var t = ChatTemplate.Detect(Llama3Jinja, "<|begin_of_text|>", "tokenizer_config.json");
        Assert.Equal(ChatFormat.Llama3, t.Format);
        Assert.True(t.GenerationPromptAlways); // this template has no add_generation_prompt condition
        string expected =
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n";
        Assert.Equal(expected, ChatTemplate.ToText(t.Render(Conversation, addGenerationPrompt: false, eosId: null)));
    }

    [Theory]
    [InlineData("qwen2", "You are a helpful assistant.")]
    [InlineData("smollm2", "You are a helpful AI assistant named SmolLM, trained by Hugging Face")]
    public void ChatMlInsertsTheTemplatesDefaultSystemPromptOnlyWhenThereIsNone(string which, string system)
    {
        var t = ChatTemplate.Detect(which == "qwen2" ? Qwen2Jinja : SmolLm2Jinja, null, "tokenizer_config.json");
        Assert.Equal(ChatFormat.ChatMl, t.Format);
        Assert.Equal(system, t.DefaultSystem);
        string body = "<|im_start|>user\n  Hi there!\n<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n";
        Assert.Equal($"<|im_start|>system\n{system}<|im_end|>\n" + body + "<|im_start|>assistant\n",
            ChatTemplate.ToText(t.Render(Conversation, addGenerationPrompt: true, eosId: null)));
        Assert.Equal($"<|im_start|>system\n{system}<|im_end|>\n" + body, ChatTemplate.ToText(t.Render(Conversation, addGenerationPrompt: false, eosId: null)));
        var withSystem = new[] { new ChatMessage("system", "Be terse.") }.Concat(Conversation).ToArray();
        Assert.Equal("<|im_start|>system\nBe terse.<|im_end|>\n" + body, ChatTemplate.ToText(t.Render(withSystem, addGenerationPrompt: false, eosId: null)));
    }

    [Fact]
    public void AlpacaIsTrainsPromptAndAnAssistantTurnEndsWithEos()
    {
        var t = ChatTemplate.Detect(null, null, "x");
        Assert.Equal(ChatFormat.Alpaca, t.Format);
        var parts = t.Render(Conversation.Take(2).ToArray(), addGenerationPrompt: true, eosId: 2);
        Assert.Equal(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
            "### Instruction:\n  Hi there!\n\n\n### Response:\nHello.<token 2>", ChatTemplate.ToText(parts));
        var tok = new CharTokenizer(67);
        var ids = t.Encode(parts, tok, atStart: true);
        Assert.Equal(1, ids[0]); // BOS, as train's Alpaca records start
        Assert.Equal(2, ids[^1]);
    }

    [Fact]
    public void UnknownTemplatesAndLlama31AreRefusedWithTheOverride()
    {
        var e = Assert.Throws<LinearizeException>(() => ChatTemplate.Detect("{{ messages[0]['content'] }}<s>", null, "m/tokenizer_config.json"));
        Assert.Contains("--chat-format", e.Message);
        Assert.StartsWith("m/tokenizer_config.json", e.Message);
        var e31 = Assert.Throws<LinearizeException>(() => ChatTemplate.Detect(
            "{{- bos_token }}{%- if tools %}{%- endif %}Cutting Knowledge Date: December 2023<|start_header_id|>x<|eot_id|>", "<s>", "c.json"));
        Assert.Contains("3.1", e31.Message);
    }

    [SharedFact("models/llama3-tokenizer/tokenizer_config.json")]
    public void TheSharedLlama3TemplateIsDetectedAndItsMarkersEncodeAsSingleSpecialTokens()
    {
        string dir = SharedData.PathOf("models/llama3-tokenizer");
        var t = ChatTemplate.ForModel(dir, null);
        Assert.Equal(ChatFormat.Llama3, t.Format);
        Assert.Equal("<|begin_of_text|>", t.BosText);
        var tok = TokenizerLoader.Load(Path.Combine(dir, "tokenizer.json"));
        var ids = t.Encode(t.Render(new[] { new ChatMessage("user", "Hi") }, true, tok.EosId), tok, atStart: true);
        // <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n Hi <|eot_id|> <|start_header_id|> assistant <|end_header_id|> \n\n
        Assert.Equal(new[] { 128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271 }, ids);
    }
}
