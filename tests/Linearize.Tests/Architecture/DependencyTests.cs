namespace Linearize.Tests.Architecture;

/// <summary>
/// The library's namespaces form layers and every reference points down (docs/ARCHITECTURE.md, "Layers"). One
/// assembly cannot enforce that by itself, so this test reads the compiled library and fails on any reference that
/// points sideways or up, naming the two types involved.
/// </summary>
public sealed class DependencyTests
{
    /// <summary>What each component may use directly; it may also use whatever those use, and nothing else. A
    /// component is the second segment of a namespace (<c>Linearize.Inference.Mixers</c> belongs to
    /// <c>Inference</c>; <c>""</c> is the root namespace). Read bottom-up, this is the layer diagram of
    /// docs/ARCHITECTURE.md.</summary>
    private static readonly Dictionary<string, string[]> Uses = new()
    {
        [""] = Array.Empty<string>(),
        ["Tokenization"] = new[] { "" },
        ["Tensors"] = new[] { "" },
        ["Checkpoints"] = new[] { "" },
        ["Data"] = new[] { "Checkpoints", "Tokenization" },
        ["Caching"] = new[] { "Checkpoints", "Tensors" },
        ["Modeling"] = new[] { "Caching", "Tokenization" },
        ["LinearAttention"] = new[] { "Modeling" },
        ["Inference"] = new[] { "LinearAttention" },
        ["Training"] = new[] { "LinearAttention", "Data" },
        ["Methods"] = new[] { "Inference" },
        ["Generation"] = new[] { "Methods" },
        ["Evaluation"] = new[] { "Methods", "Data" },
        ["Interchange"] = new[] { "Methods" },
        ["Workflows"] = new[] { "Generation", "Evaluation", "Training", "Interchange" },
    };

    private static HashSet<string> Below(string component)
    {
        if (!Uses.ContainsKey(component))
            throw new InvalidOperationException(
                $"namespace component '{component}' is not placed in DependencyTests.Uses: place it there and in docs/ARCHITECTURE.md");
        var seen = new HashSet<string>();
        var stack = new Stack<string>(Uses[component]);
        while (stack.Count > 0)
            if (seen.Add(stack.Peek()))
                foreach (var next in Uses[stack.Pop()])
                    stack.Push(next);
            else
                stack.Pop();
        return seen;
    }

    private static string ComponentOf(string ns)
    {
        var parts = ns.Split('.');
        return parts.Length > 1 ? parts[1] : "";
    }

    private static bool Allowed(string from, string to)
    {
        string a = ComponentOf(from), b = ComponentOf(to);
        return a == b || Below(a).Contains(b);
    }

    [Fact]
    public void TheAllowedUsesHaveNoCycle()
    {
        foreach (var component in Uses.Keys)
            Assert.False(Below(component).Contains(component), $"'{component}' reaches itself through DependencyTests.Uses");
    }

    [Fact]
    public void EveryReferencePointsToALowerLayer()
    {
        var edges = NamespaceGraph.Edges(typeof(LinearizeException).Assembly.Location, "Linearize");
        Assert.NotEmpty(edges);
        var wrong = edges.Where(e => !Allowed(e.Key.From, e.Key.To))
            .Select(e => $"{e.Key.From} → {e.Key.To} (e.g. {e.Value})")
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.True(wrong.Count == 0, "references against the layering:\n" + string.Join("\n", wrong));
    }

    /// <summary>The edges the layering was introduced to remove; the rule must refuse each of them.</summary>
    [Theory]
    [InlineData("Linearize.Training", "Linearize.Evaluation")]
    [InlineData("Linearize.Evaluation.Recall", "Linearize.Training")]
    [InlineData("Linearize.Generation.Chat", "Linearize.Training")]
    [InlineData("Linearize.Modeling", "Linearize.LinearAttention")]
    [InlineData("Linearize.Modeling", "Linearize.Methods")]
    [InlineData("Linearize.Checkpoints", "Linearize.Modeling")]
    [InlineData("Linearize.Training", "Linearize.Inference")]
    [InlineData("Linearize.Inference", "Linearize.Methods")]
    [InlineData("Linearize.LinearAttention.Layers", "Linearize.Inference.Mixers")]
    [InlineData("Linearize.Evaluation.Tasks", "Linearize.Training")]
    [InlineData("Linearize.Training", "Linearize.Workflows")]
    public void RefusesEdgesAgainstTheLayering(string from, string to) => Assert.False(Allowed(from, to));

    /// <summary>The graph reader itself: a known downward reference must be seen, or the test above proves nothing.</summary>
    [Fact]
    public void SeesReferencesInsideMethodBodies()
    {
        var edges = NamespaceGraph.Edges(typeof(LinearizeException).Assembly.Location, "Linearize");
        Assert.Contains(("Linearize.Inference", "Linearize.Modeling.Llama"), edges.Keys);
        Assert.Contains(("Linearize.Workflows", "Linearize.Evaluation.Recall"), edges.Keys);
    }
}
