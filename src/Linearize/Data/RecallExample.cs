namespace Linearize.Data;

/// <summary>One MQAR sequence: its tokens, the positions <c>p</c> whose next token is an answer (the query key sits at
/// <c>p</c>, its value at <c>p + 1</c>), and each answer's key-to-query distance in tokens.</summary>
public sealed record RecallExample(int[] Tokens, int[] QueryPositions, int[] Distances);
