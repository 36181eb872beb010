namespace Linearize.Generation.Chat;

/// <summary>A piece of a rendered chat prompt: text to tokenize, or one token given by id (Alpaca's EOS, which a
/// llama2.c tokenizer cannot spell as text).</summary>
public readonly record struct ChatPromptPart(string? Text, int? Token);
