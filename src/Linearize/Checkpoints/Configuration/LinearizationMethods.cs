namespace Linearize.Checkpoints.Configuration;

/// <summary>
/// The registry of linearization methods: every name the project accepts, in the order listings show them. Adding a
/// method of an existing kind is one entry here (plus its family's ops); a new kind also gets a row in
/// <c>Methods.MixerRegistry</c> (docs/ARCHITECTURE.md, "Adding a token mixer").
/// </summary>
public static class LinearizationMethods
{
    public static readonly LinearizationMethod LigerGla = Liger("liger-gla", LigerFamily.Gla, "gated linear attention, per-channel gate from the keys");
    public static readonly LinearizationMethod LigerHgrn2 = Liger("liger-hgrn2", LigerFamily.Hgrn2, "HGRN2, per-channel gate tied to the key");
    public static readonly LinearizationMethod LigerGsa = Liger("liger-gsa", LigerFamily.Gsa, "gated slot attention over M slots");
    public static readonly LinearizationMethod LigerMamba2 = Liger("liger-mamba2", LigerFamily.Mamba2, "Mamba2-style scalar decay per head");
    public static readonly LinearizationMethod LigerMlstm = Liger("liger-mlstm", LigerFamily.Mlstm, "mLSTM-style scalar forget gate per head");
    public static readonly LinearizationMethod LigerRetention = Liger("liger-retention", LigerFamily.Retention, "gated retention, scalar gate per head");
    public static readonly LinearizationMethod LigerGdn = Liger("liger-gdn", LigerFamily.Gdn, "Gated DeltaNet: delta rule with a scalar decay");
    public static readonly LinearizationMethod LigerDeltaNet = Liger("liger-deltanet", LigerFamily.DeltaNet, "DeltaNet: delta rule without decay");

    public static readonly LinearizationMethod Swa = new("swa", MethodKind.SlidingWindow, "sliding-window softmax (training-free baseline)");

    public static readonly LinearizationMethod LolcatsSw = new("lolcats-sw", MethodKind.Lolcats,
        "LoLCATs: learned feature maps, sliding window + linear term", shape: LolcatsWindowShape.Sw);

    public static readonly LinearizationMethod LolcatsTk = new("lolcats-tk", MethodKind.Lolcats,
        "LoLCATs: learned feature maps, terraced window + linear term", shape: LolcatsWindowShape.Tk);

    public static IReadOnlyList<LinearizationMethod> All { get; } = new[]
    {
        LigerGla, LigerHgrn2, LigerGsa, LigerMamba2, LigerMlstm, LigerRetention, LigerGdn, LigerDeltaNet, Swa, LolcatsSw, LolcatsTk,
    };

    /// <summary>Every name, in registry order.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(m => m.Name).ToArray();

    public static LinearizationMethod? Find(string name) => All.FirstOrDefault(m => m.Name == name);

    /// <summary>The method called <paramref name="name"/>; otherwise an error that says where the name came from and
    /// lists the known ones.</summary>
    public static LinearizationMethod Get(string name, string where) =>
        Find(name) ?? throw new LinearizeException($"{where}: unknown linearization method '{name}' (supported: {string.Join(", ", Names)})");

    /// <summary>The method of a Liger family.</summary>
    public static LinearizationMethod Of(LigerFamily family) => All.Single(m => m.Family == family);

    /// <summary>The method of a LoLCATs window shape.</summary>
    public static LinearizationMethod Of(LolcatsWindowShape shape) => All.Single(m => m.Shape == shape);

    private static LinearizationMethod Liger(string name, LigerFamily family, string summary) =>
        new(name, MethodKind.Liger, summary, family: family);
}
