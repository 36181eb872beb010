namespace Linearize.Generation.Chat;

/// <summary>One turn of a conversation: <paramref name="Role"/> is <c>system</c>, <c>user</c> or <c>assistant</c>.</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public static readonly IReadOnlySet<string> Roles = new HashSet<string>(StringComparer.Ordinal) { "system", "user", "assistant" };
}
