namespace Linearize.Checkpoints.Configuration;

/// <summary>One linearization method: the name <c>config.json</c> and <c>--method</c> use, the kind of layer it
/// builds, and the parameter that tells it apart from the other methods of that kind. Instances exist only in
/// <see cref="LinearizationMethods"/>, so two methods are equal exactly when they are the same entry.</summary>
public sealed class LinearizationMethod
{
    internal LinearizationMethod(string name, MethodKind kind, string summary, LigerFamily? family = null, LolcatsWindowShape? shape = null)
    {
        Name = name;
        Kind = kind;
        Summary = summary;
        Family = family;
        Shape = shape;
    }

    /// <summary>The name in <c>config.json</c> (<c>linearization.method</c>) and on the command line.</summary>
    public string Name { get; }

    public MethodKind Kind { get; }

    /// <summary>One line for <c>--help</c> and listings.</summary>
    public string Summary { get; }

    /// <summary>The recurrent family of a <see cref="MethodKind.Liger"/> method.</summary>
    public LigerFamily? Family { get; }

    /// <summary>The window shape of a <see cref="MethodKind.Lolcats"/> method.</summary>
    public LolcatsWindowShape? Shape { get; }

    /// <summary>The delta-rule Liger families, which add the per-head β projection <c>b_proj</c>.</summary>
    public bool IsDeltaRule => Family is LigerFamily.Gdn or LigerFamily.DeltaNet;

    /// <summary>The methods that can keep LoLA's sparse cache (docs/METHODS.md §1.7): the gated and delta-rule Liger
    /// families (not GSA, whose state is read through a slot softmax) and the LoLCATs sliding window.</summary>
    public bool SupportsSparseCache =>
        (Kind == MethodKind.Liger && Family != LigerFamily.Gsa) || Shape == LolcatsWindowShape.Sw;

    public override string ToString() => Name;
}
