namespace Linearize.Generation.Chat;

/// <summary>The chat prompt formats <see cref="ChatTemplate"/> renders.</summary>
public enum ChatFormat
{
    /// <summary>Stanford Alpaca's instruction prompt, as <c>train</c> renders Alpaca data; an assistant turn ends with EOS.</summary>
    Alpaca,

    /// <summary>Meta Llama 3: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;</c>, BOS first.</summary>
    Llama3,

    /// <summary>ChatML (Qwen2, SmolLM2): <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>, with the template's default system prompt.</summary>
    ChatMl,
}
