using System.CommandLine;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention;

namespace Linearize.Cli;

/// <summary>
/// The conversion options <c>convert</c> and <c>pipeline</c> share, turned into a <see cref="LinearizationConfig"/>. An
/// option that does nothing for the chosen method is an error naming the methods it applies to.
/// </summary>
public sealed class ConversionCliOptions
{
    public ConversionCliOptions(bool methodRequired)
    {
        Method = new Option<string>("--method")
        {
            Description = "Replacement for softmax attention (see the list above)",
            HelpName = "METHOD",
            Required = methodRequired,
            DefaultValueFactory = methodRequired ? null! : _ => LinearizationMethods.LigerGla.Name,
        };
        Method.AcceptOnlyFromAmong(LinearizationMethods.Names.ToArray());
    }

    public Option<string> Method { get; }

    public Option<int> Window { get; } = new("--window")
    {
        Description = "Softmax window: keys per query incl. itself (liger, swa, lolcats-sw); the block length (lolcats-tk). Paper: 64",
        DefaultValueFactory = _ => 64,
    };

    public Option<string?> SoftmaxLayers { get; } = new("--softmax-layers") { Description = "Comma-separated layers that stay full softmax attention, e.g. 3,7" };

    public Option<int?> SoftmaxEvery { get; } = new("--softmax-every") { Description = "Keep every K-th layer softmax (layers K-1, 2K-1, …); 8 is Liger's 7:1 hybrid" };

    public Option<double> Alpha { get; } = new("--mix-alpha") { Description = "liger-*: weight of the window branch (paper Eq. 9: 0.5)", DefaultValueFactory = _ => 0.5 };

    public Option<double> Beta { get; } = new("--mix-beta") { Description = "liger-*: weight of the recurrent branch (paper Eq. 9: 0.5)", DefaultValueFactory = _ => 0.5 };

    public Option<double?> GateNormalizer { get; } = new("--gate-normalizer") { Description = "liger-*: divide the log gate by this (default: 16 for gla/gsa, 1 for the others)" };

    public Option<int?> Slots { get; } = new("--slots") { Description = "liger-gsa: slots per head (default: head_dim)" };

    public Option<bool> NormalizeRecurrent { get; } = new("--normalize-recurrent") { Description = "liger-*: divide the recurrent branch by φ(q)·Σφ(k) (not in Liger; for small heads)" };

    public Option<bool> NegativeEigenvalues { get; } = new("--negative-eigenvalues") { Description = "liger-gdn, liger-deltanet: β = 2σ(W_β x) ∈ (0, 2) (Grazzi et al. 2025: negative eigenvalues for state tracking)" };

    public Option<int> SparseCache { get; } = new("--sparse-cache") { Description = "lolcats-sw, liger-gla, -hgrn2, -mamba2, -mlstm, -retention, -gdn, -deltanet: keep up to N evicted key-value pairs per KV head that the linear state recalls worst, attended in the window's softmax (LoLA; lolcats-sw keeps them out of the linear state while cached; 0 = off)", DefaultValueFactory = _ => 0 };

    public Option<string> Gate { get; } = new("--gate")
    {
        Description = "liger-gla, -mamba2, -mlstm, -retention, -gdn: keys (Liger's gate from the key projection) or learned (Lizard: a scalar per head σ(W_γ x), new g_proj trained by distill / --train-modules g_proj)",
        DefaultValueFactory = _ => "keys",
    };

    public Option<double?> GateBias { get; } = new("--gate-bias")
    {
        Description = "--gate learned: start g_proj at zero weights and this bias (default: the mean of each head's k_proj rows, the key-pooled gate)",
    };

    public Option<string> OutputNorm { get; } = new("--output-norm")
    {
        Description = "liger-gla, -hgrn2, -mamba2, -mlstm, -retention: none, or rmsnorm (TransNormer: each head's recurrent read-out divided by its RMS)",
        DefaultValueFactory = _ => "none",
    };

    public Option<int> Sinks { get; } = new("--sinks") { Description = "swa: always-visible first tokens", DefaultValueFactory = _ => 0 };

    public Option<string> FeatureMap { get; } = new("--feature-map") { Description = "lolcats-*: hedgehog (softmax ⊕ softmax(−)) or t2r (ReLU(xW + b))", DefaultValueFactory = _ => "hedgehog" };

    public Option<int?> FeatureDim { get; } = new("--feature-dim") { Description = "lolcats-*: d', columns of each head's map W (default: min(64, head_dim))" };

    public Option<double> WindowFactor { get; } = new("--window-factor") { Description = "lolcats-*: initial γ = σ(window_factors), the window's weight (paper: 0.1)", DefaultValueFactory = _ => 0.1 };

    public Option<bool> AffineFactors { get; } = new("--affine-factors") { Description = "lolcats-*: weight the linear term by λ = 1 − γ instead of 1" };

    private IEnumerable<(Option Option, Func<LinearizationMethod, bool> AppliesTo)> MethodSpecific => new (Option, Func<LinearizationMethod, bool>)[]
    {
        (Alpha, IsLiger), (Beta, IsLiger), (GateNormalizer, IsLiger), (NormalizeRecurrent, IsLiger),
        (Slots, m => m.Family == LigerFamily.Gsa), (NegativeEigenvalues, m => m.IsDeltaRule),
        (SparseCache, m => m.SupportsSparseCache), (Sinks, m => m.Kind == MethodKind.SlidingWindow),
        (Gate, m => m.Family is { } f && LigerOptions.SupportsLearnedGate(f)), (GateBias, m => m.Family is { } f && LigerOptions.SupportsLearnedGate(f)),
        (OutputNorm, m => m.Family is { } f && LigerOptions.SupportsOutputNorm(f)),
        (FeatureMap, IsLolcats), (FeatureDim, IsLolcats), (WindowFactor, IsLolcats), (AffineFactors, IsLolcats),
    };

    private static bool IsLiger(LinearizationMethod m) => m.Kind == MethodKind.Liger;

    private static bool IsLolcats(LinearizationMethod m) => m.Kind == MethodKind.Lolcats;

    /// <summary>The methods an option applies to, by name, for its error message.</summary>
    private static string NamesWhere(Func<LinearizationMethod, bool> appliesTo) =>
        string.Join(", ", LinearizationMethods.All.Where(appliesTo).Select(m => m.Name));

    public void AddTo(Command command)
    {
        FeatureMap.AcceptOnlyFromAmong("hedgehog", "t2r");
        Gate.AcceptOnlyFromAmong("keys", "learned");
        OutputNorm.AcceptOnlyFromAmong("none", "rmsnorm");
        foreach (var o in new Option[] { Method, Window, SoftmaxLayers, SoftmaxEvery, Alpha, Beta, GateNormalizer, Slots, NormalizeRecurrent, NegativeEigenvalues, SparseCache,
                     Gate, GateBias, OutputNorm, Sinks,
                     FeatureMap, FeatureDim, WindowFactor, AffineFactors })
            command.Add(o);
    }

    /// <summary>The methods, one per line, for a command's description.</summary>
    public static string MethodList =>
        "Methods: " + string.Join("; ", LinearizationMethods.All.Select(m => $"{m.Name} ({m.Summary})")) +
        ". Liger methods add no parameters except b_proj (β) for the delta rule and g_proj with --gate learned; LoLCATs feature maps and those are trained with 'linearize distill'.";

    /// <summary>Refuses options that do nothing for the chosen method, and contradictory ones — before any file is read.</summary>
    public void Validate(ParseResult r)
    {
        var m = LinearizationMethods.Get(r.GetValue(Method)!, "--method");
        foreach (var (option, appliesTo) in MethodSpecific)
            if (Given(r, option) && !appliesTo(m))
                throw new LinearizeException($"{option.Name} applies to {NamesWhere(appliesTo)}, not {m}");
        if (r.GetValue(SoftmaxLayers) is not null && r.GetValue(SoftmaxEvery) is not null)
            throw new LinearizeException("give --softmax-layers or --softmax-every, not both");
        bool learned = r.GetValue(Gate) == "learned";
        if (Given(r, GateBias) && !learned)
            throw new LinearizeException("--gate-bias sets the learned gate's start: add --gate learned");
        if (r.GetValue(GateBias) is { } bias && !double.IsFinite(bias))
            throw new LinearizeException($"--gate-bias must be a finite number, got {bias}");
        if (r.GetValue(OutputNorm) == "rmsnorm" && r.GetValue(NormalizeRecurrent))
            throw new LinearizeException("--output-norm rmsnorm replaces --normalize-recurrent's denominator: give one of them");
        if (r.GetValue(SparseCache) < 0)
            throw new LinearizeException($"--sparse-cache must be ≥ 0, got {r.GetValue(SparseCache)}");
        double gamma = r.GetValue(WindowFactor);
        if (!(gamma > 0 && gamma < 1))
            throw new LinearizeException($"--window-factor must be in (0, 1), got {gamma}");
    }

    /// <summary>Builds the linearization for a teacher with <paramref name="layers"/> layers.</summary>
    public LinearizationConfig Build(ParseResult r, int layers)
    {
        Validate(r);
        var m = LinearizationMethods.Get(r.GetValue(Method)!, "--method");
        double gamma = r.GetValue(WindowFactor);
        return new LinearizationConfig
        {
            Method = m,
            Sinks = r.GetValue(Sinks),
            SoftmaxLayers = r.GetValue(SoftmaxLayers) is string list ? LinearizationConfig.ParseLayerList(list, layers)
                : r.GetValue(SoftmaxEvery) is int k ? LinearizationConfig.EveryKth(k, layers) : Array.Empty<int>(),
            Liger = new LigerOptions
            {
                Family = m.Family ?? LigerFamily.Gla,
                Window = r.GetValue(Window),
                Alpha = r.GetValue(Alpha),
                Beta = r.GetValue(Beta),
                GateNormalizer = r.GetValue(GateNormalizer),
                Slots = r.GetValue(Slots),
                NormalizeRecurrent = r.GetValue(NormalizeRecurrent),
                NegativeEigenvalues = r.GetValue(NegativeEigenvalues),
                SparseCache = m.Kind == MethodKind.Liger ? r.GetValue(SparseCache) : 0,
                Gate = r.GetValue(Gate) == "learned" ? LigerGate.Learned : LigerGate.Keys,
                LearnedGateBias = r.GetValue(GateBias),
                OutputNorm = r.GetValue(OutputNorm) == "rmsnorm" ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
            },
            Lolcats = new LolcatsOptions
            {
                Shape = m.Shape ?? LolcatsWindowShape.Sw,
                Window = r.GetValue(Window),
                FeatureMap = r.GetValue(FeatureMap) == "t2r" ? LolcatsFeatureMapKind.T2r : LolcatsFeatureMapKind.Hedgehog,
                FeatureDim = r.GetValue(FeatureDim),
                InitWindowFactor = Math.Log(gamma / (1 - gamma)),
                AffineAttentionFactors = r.GetValue(AffineFactors),
                SparseCache = m.Kind == MethodKind.Lolcats ? r.GetValue(SparseCache) : 0,
            },
        };
    }

    /// <summary>True when the user typed the option (not its default).</summary>
    private static bool Given(ParseResult r, Option option) => r.GetResult(option) is { Implicit: false };
}
