using System.Reflection;
using Linearize.Inference.Kernels;
using Xunit.Sdk;

namespace Linearize.Tests.Fixtures;

/// <summary>One row of a theory whose arguments name a <see cref="KernelIsa"/>: the row is reported skipped, with the
/// reason, on a CPU without that ISA — never passed without running — while the theory's other rows run.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
public sealed class IsaInlineDataAttribute : DataAttribute
{
    private readonly object[] _data;

    public IsaInlineDataAttribute(params object[] data)
    {
        _data = data;
        foreach (var isa in data.OfType<KernelIsa>())
            if (!KernelIsaSupport.IsSupported(isa))
                Skip = $"this CPU does not run {KernelIsaSupport.Name(isa)} kernels (best: {KernelIsaSupport.Name(KernelIsaSupport.Best)})";
    }

    public override IEnumerable<object[]> GetData(MethodInfo testMethod) => new[] { _data };
}
