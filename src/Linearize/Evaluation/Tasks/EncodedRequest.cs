namespace Linearize.Evaluation.Tasks;

/// <summary>A request as token ids: the context (with BOS when the tokenizer adds it) and the continuation.</summary>
public sealed record EncodedRequest(int[] Context, int[] Continuation)
{
    public int Length => Context.Length + Continuation.Length;
}
