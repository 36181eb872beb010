using Xunit.Abstractions;

namespace Linearize.Tests.Architecture;

public sealed class DependencyTests(ITestOutputHelper output)
{
    [Fact]
    public void PrintGraph()
    {
        var edges = NamespaceGraph.Edges(typeof(LinearizeException).Assembly.Location, "Linearize");
        foreach (var ((from, to), example) in edges.OrderBy(e => e.Key.From).ThenBy(e => e.Key.To))
            output.WriteLine($"{from} -> {to}   ({example})");
    }
}
