using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Linearize.Data;
using Linearize.Tokenization;

namespace Linearize.Generation.Chat;

/// <summary>
/// Renders a conversation into the prompt a model was tuned on. Hugging Face ships the format as a Jinja template
/// (<c>chat_template</c> in <c>tokenizer_config.json</c>); no maintained .NET Jinja engine is served here, so the
/// formats are built in and <see cref="Detect"/> recognizes them from the template text: Llama 3 (its
/// <c>content | trim</c>, BOS before the first message, and whether the assistant header depends on
/// <c>add_generation_prompt</c>), and ChatML with the default system prompt the template inserts when the conversation
/// has none (Qwen2's "You are a helpful assistant.", SmolLM2's own). A template that is neither is refused with a
/// message naming the override, never rendered wrongly. Models without a template (stories260K, Alpaca-tuned students)
/// get the Alpaca prompt <c>train</c> uses. All three formats concatenate per message, which is what lets
/// <see cref="ChatSession"/> feed only the new turn to a model that keeps the conversation in its state.
/// </summary>
public sealed class ChatTemplate
{
    private ChatTemplate(ChatFormat format, string? bosText, string? defaultSystem, bool generationPromptAlways, string source)
    {
        Format = format;
        BosText = bosText;
        DefaultSystem = defaultSystem;
        GenerationPromptAlways = generationPromptAlways;
        Source = source;
    }

    public ChatFormat Format { get; }

    /// <summary>Text of the BOS token the template writes before the first message (Llama 3), else null.</summary>
    public string? BosText { get; }

    /// <summary>System prompt ChatML templates insert when the first message is not a system message.</summary>
    public string? DefaultSystem { get; }

    /// <summary>The template appends the assistant header even without <c>add_generation_prompt</c> (Meta's original
    /// Llama 3 template does).</summary>
    public bool GenerationPromptAlways { get; }

    /// <summary>Where the format came from, for reports (e.g. <c>llama3 (detected from tokenizer_config.json)</c>).</summary>
    public string Source { get; }

    /// <summary>The special-token text that ends an assistant turn, if the format spells it as text.</summary>
    public string? TurnEndText => Format switch
    {
        ChatFormat.Llama3 => "<|eot_id|>",
        ChatFormat.ChatMl => "<|im_end|>",
        _ => null,
    };

    /// <summary>Text that follows the turn-end token before the next message.</summary>
    public string AfterTurnEnd => Format == ChatFormat.ChatMl ? "\n" : "";

    public static ChatTemplate Alpaca(string source = "alpaca (the model has no chat template)") => new(ChatFormat.Alpaca, null, null, false, source);

    public static ChatTemplate Create(ChatFormat format, string? bosText = null, string? defaultSystem = null) =>
        format == ChatFormat.Alpaca ? Alpaca("alpaca (chosen)") : new(format, bosText, defaultSystem, false, $"{Name(format)} (chosen)");

    public static string Name(ChatFormat format) => format switch
    {
        ChatFormat.Alpaca => "alpaca",
        ChatFormat.Llama3 => "llama3",
        _ => "chatml",
    };

    public static ChatFormat ParseFormat(string text) => text.ToLowerInvariant() switch
    {
        "alpaca" => ChatFormat.Alpaca,
        "llama3" or "llama-3" => ChatFormat.Llama3,
        "chatml" => ChatFormat.ChatMl,
        _ => throw new LinearizeException($"--chat-format: '{text}' is not one of auto, alpaca, llama3, chatml"),
    };

    /// <summary>Recognizes a Jinja <c>chat_template</c>; <paramref name="where"/> names the file in errors.</summary>
    public static ChatTemplate Detect(string? jinja, string? bosText, string where)
    {
        if (string.IsNullOrWhiteSpace(jinja))
            return Alpaca();
        bool always = !jinja.Contains("add_generation_prompt", StringComparison.Ordinal);
        if (jinja.Contains("<|start_header_id|>", StringComparison.Ordinal) && jinja.Contains("<|eot_id|>", StringComparison.Ordinal))
        {
            if (jinja.Contains("Cutting Knowledge Date", StringComparison.Ordinal) || jinja.Contains("tools", StringComparison.Ordinal))
                throw new LinearizeException(
                    $"{where}: chat_template is a Llama 3.1-style template (tools, knowledge dates), which the built-in formats do not reproduce; pass --chat-format llama3 for the plain Llama 3 format");
            return new ChatTemplate(ChatFormat.Llama3, jinja.Contains("bos_token", StringComparison.Ordinal) ? bosText : null, null, always,
                $"llama3 (detected from {where})");
        }

        if (jinja.Contains("<|im_start|>", StringComparison.Ordinal) && jinja.Contains("<|im_end|>", StringComparison.Ordinal))
        {
            // The default system prompt is the literal the template writes when messages[0] is not a system message.
            var m = Regex.Match(jinja, @"'<\|im_start\|>system\\n((?:[^'\\]|\\.)*?)<\|im_end\|>");
            string? system = m.Success && jinja.Contains("!= 'system'", StringComparison.Ordinal) ? Unescape(m.Groups[1].Value) : null;
            return new ChatTemplate(ChatFormat.ChatMl, null, system, always, $"chatml (detected from {where})");
        }

        throw new LinearizeException(
            $"{where}: chat_template is not a format this build renders (Llama 3, ChatML); no .NET Jinja engine is available to run it — pass --chat-format alpaca|llama3|chatml");
    }

    /// <summary>The template of a model directory: <c>tokenizer_config.json</c> beside the model or its tokenizer.</summary>
    public static ChatTemplate ForModel(string modelPath, string? tokenizerPath)
    {
        foreach (var dir in new[] { Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath)), tokenizerPath is null ? null : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath)) })
        {
            if (dir is null)
                continue;
            string file = Path.Combine(dir, "tokenizer_config.json");
            if (!File.Exists(file))
                continue;
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(file));
                var root = doc.RootElement;
                string? template = root.TryGetProperty("chat_template", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                string? bos = root.TryGetProperty("bos_token", out var b)
                    ? b.ValueKind == JsonValueKind.String ? b.GetString()
                    : b.ValueKind == JsonValueKind.Object && b.TryGetProperty("content", out var c) ? c.GetString() : null
                    : null;
                return Detect(template, bos, file);
            }
            catch (JsonException e)
            {
                throw new LinearizeException($"{file}: {JsonErrorText.Describe(e)}");
            }
        }

        return Alpaca();
    }

    /// <summary>The prompt of <paramref name="messages"/>, as parts to encode with <see cref="Encode"/>.</summary>
    public IReadOnlyList<ChatPromptPart> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, int? eosId)
    {
        var parts = new List<ChatPromptPart>();
        if (Format == ChatFormat.ChatMl && DefaultSystem is not null && (messages.Count == 0 || messages[0].Role != "system"))
            parts.Add(new ChatPromptPart($"<|im_start|>system\n{DefaultSystem}<|im_end|>\n", null));
        for (int i = 0; i < messages.Count; i++)
            parts.AddRange(RenderMessage(messages, i, eosId));
        if (addGenerationPrompt || GenerationPromptAlways)
            parts.Add(new ChatPromptPart(GenerationPrompt, null));
        return parts;
    }

    /// <summary>The parts of the messages that follow an assistant reply whose turn is already closed, then the
    /// generation prompt: what a conversation kept in a recurrent state needs fed for its next turn.</summary>
    public IReadOnlyList<ChatPromptPart> RenderNextTurn(IReadOnlyList<ChatMessage> all, int firstNew, int? eosId)
    {
        var parts = new List<ChatPromptPart>();
        for (int i = firstNew; i < all.Count; i++)
            parts.AddRange(RenderMessage(all, i, eosId));
        parts.Add(new ChatPromptPart(GenerationPrompt, null));
        return parts;
    }

    /// <summary>The assistant header that starts the model's reply.</summary>
    public string GenerationPrompt => Format switch
    {
        ChatFormat.Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ChatFormat.ChatMl => "<|im_start|>assistant\n",
        _ => "",
    };

    private IEnumerable<ChatPromptPart> RenderMessage(IReadOnlyList<ChatMessage> messages, int i, int? eosId)
    {
        var m = messages[i];
        switch (Format)
        {
            case ChatFormat.Llama3:
                string text = $"<|start_header_id|>{m.Role}<|end_header_id|>\n\n{m.Content.Trim()}<|eot_id|>";
                yield return new ChatPromptPart(i == 0 && BosText is not null ? BosText + text : text, null);
                break;
            case ChatFormat.ChatMl:
                yield return new ChatPromptPart($"<|im_start|>{m.Role}\n{m.Content}<|im_end|>\n", null);
                break;
            default:
                // Alpaca: a system message replaces the preamble of the user turn that follows it; a user turn is the
                // instruction prompt; an assistant turn is its text and EOS, as train renders a record.
                if (m.Role == "system")
                    yield break;
                if (m.Role == "assistant")
                {
                    yield return new ChatPromptPart(m.Content, null);
                    if (eosId is int eos)
                        yield return new ChatPromptPart(null, eos);
                    yield break;
                }

                string prompt = AlpacaDataset.PromptWithoutInput.Replace("{instruction}", m.Content, StringComparison.Ordinal);
                if (i > 0 && messages[i - 1].Role == "system")
                    prompt = messages[i - 1].Content + "\n\n" + prompt[(prompt.IndexOf("### Instruction:", StringComparison.Ordinal))..];
                yield return new ChatPromptPart(prompt, null);
                break;
        }
    }

    /// <summary>Token ids of rendered parts. BOS is added by the tokenizer only where the format does not write it
    /// itself and the tokenizer adds it by default (Alpaca); text is encoded without BOS, as HF's
    /// <c>apply_chat_template</c> does.</summary>
    public List<int> Encode(IReadOnlyList<ChatPromptPart> parts, TextTokenizer tokenizer, bool atStart)
    {
        var ids = new List<int>();
        // Llama 3 chosen by name (no template to give the BOS text) starts with the tokenizer's BOS id instead.
        bool bosById = Format switch
        {
            ChatFormat.Alpaca => tokenizer.AddBosByDefault,
            ChatFormat.Llama3 => BosText is null,
            _ => false,
        };
        if (atStart && bosById && tokenizer.BosId is int bos)
            ids.Add(bos);
        var text = new StringBuilder();
        void FlushText()
        {
            if (text.Length > 0)
                ids.AddRange(tokenizer.Encode(text.ToString(), addBos: false));
            text.Clear();
        }

        foreach (var p in parts)
        {
            if (p.Token is int t)
            {
                FlushText();
                ids.Add(t);
            }
            else
                text.Append(p.Text);
        }

        FlushText();
        return ids;
    }

    /// <summary>Readable text of rendered parts (tokens given by id shown as <c>&lt;token N&gt;</c>); for tests and --verbose.</summary>
    public static string ToText(IReadOnlyList<ChatPromptPart> parts) =>
        string.Concat(parts.Select(p => p.Text ?? $"<token {p.Token}>"));

    private static string Unescape(string jinjaLiteral) =>
        Regex.Replace(jinjaLiteral, @"\\(.)", m => m.Groups[1].Value switch { "n" => "\n", "t" => "\t", var c => c });
}
