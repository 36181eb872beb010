namespace Linearize.Methods;

/// <summary>What a conversion written file by file did with the teacher's weights.</summary>
/// <param name="Mixers">Each distinct layer mixer with its count, e.g. <c>liger-gla(window=64, …) × 12</c>.</param>
/// <param name="LinkedFiles">Teacher weight files hard-linked unchanged (same bytes, no copy).</param>
/// <param name="CopiedFiles">Teacher weight files rewritten tensor by tensor (another element type, or no link possible).</param>
/// <param name="AddedTensors">Parameters the method adds (LoLCATs' feature maps and window factors, the delta rule's
/// <c>b_proj</c>), written to their own file.</param>
public sealed record ConversionResult(IReadOnlyList<string> Mixers, int LinkedFiles, int CopiedFiles, int AddedTensors);
