namespace Linearize.Tests.Fixtures;

/// <summary>Tests that touch libtorch global state (seeds, default dtype) run one at a time.</summary>
[CollectionDefinition("Torch", DisableParallelization = true)]
public sealed class TorchCollection
{
}
