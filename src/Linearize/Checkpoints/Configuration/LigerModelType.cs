namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// One <c>model_type</c> of the Liger authors' code (<c>liger/models/liger_*</c>): the teacher architecture its
/// weights are named after, the gate family its attention builds, and the class their <c>config.json</c> names.
/// </summary>
/// <param name="ModelType">Their <c>model_type</c>, e.g. <c>liger_gla</c>.</param>
/// <param name="BaseModelType">Our <c>model_type</c> for the teacher they subclass (<c>llama</c>, <c>mistral</c>, <c>qwen2</c>).</param>
/// <param name="Method">Our linearization method computing the same layer.</param>
/// <param name="Architecture">Their <c>architectures[0]</c>.</param>
public sealed record LigerModelType(string ModelType, string BaseModelType, LinearizationMethod Method, string Architecture);
