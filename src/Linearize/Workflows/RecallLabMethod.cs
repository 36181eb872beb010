using Linearize.Checkpoints.Configuration;

namespace Linearize.Workflows;

/// <summary>
/// One converted row of the recall lab: a method, and the Liger variants it is converted with — for the delta-rule
/// families whether β may reach 2 (<see cref="LigerOptions.NegativeEigenvalues"/>, Grazzi et al. 2025), the learned
/// per-head gate (<see cref="LigerGate.Learned"/>, docs/METHODS.md §1.8) and the RMSNorm read-out
/// (<see cref="LigerOutputNorm.RmsNorm"/>, §1.9) and LoLA's sparse cache of N pairs per KV head (§1.7; Liger's gated
/// families and <c>lolcats-sw</c>). Named as on the command line: the method's name with <c>+neg</c>, <c>+learned</c>,
/// <c>+rmsnorm</c>, <c>+sparseN</c> appended (<c>liger-gdn+neg</c>, <c>liger-gla+learned+rmsnorm</c>,
/// <c>lolcats-sw+sparse16</c>; <c>+posthoc</c> after <c>+sparseN</c>: the cache attached to the row trained without it,
/// LoLA's training-free recipe), which is also the row's directory under <c>methods/</c>.
/// </summary>
public sealed record RecallLabMethod(LinearizationMethod Method, bool NegativeEigenvalues = false, bool LearnedGate = false, bool RmsNorm = false,
    int SparseCache = 0, bool CacheAfterTraining = false)
{
    public const string NegativeSuffix = "+neg";
    public const string LearnedSuffix = "+learned";
    public const string RmsNormSuffix = "+rmsnorm";

    /// <summary>Followed by the slot count: <c>+sparse16</c>.</summary>
    public const string SparseSuffix = "+sparse";

    /// <summary>After <c>+sparseN</c>: the cache is attached only after the row without it has trained (LoLA's
    /// training-free recipe): <c>lolcats-sw+sparse16+posthoc</c>.</summary>
    public const string PostHocSuffix = "+posthoc";

    public string Name => Method.Name + (NegativeEigenvalues ? NegativeSuffix : "") + (LearnedGate ? LearnedSuffix : "") + (RmsNorm ? RmsNormSuffix : "") +
                          (SparseCache > 0 ? SparseSuffix + SparseCache.ToString(System.Globalization.CultureInfo.InvariantCulture) : "") +
                          (CacheAfterTraining ? PostHocSuffix : "");

    /// <summary>The row whose training this row evaluates: itself, or without the cache when it comes after training.</summary>
    public RecallLabMethod Trained => CacheAfterTraining ? this with { SparseCache = 0, CacheAfterTraining = false } : this;

    public override string ToString() => Name;

    /// <summary>The row's Liger options over <paramref name="options"/>.</summary>
    public LigerOptions Liger(LigerOptions options) => options with
    {
        NegativeEigenvalues = NegativeEigenvalues,
        Gate = LearnedGate ? LigerGate.Learned : LigerGate.Keys,
        OutputNorm = RmsNorm ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
        SparseCache = Method.Kind == MethodKind.Liger ? SparseCache : 0,
    };

    /// <summary>The row's LoLCATs options over <paramref name="options"/>.</summary>
    public LolcatsOptions Lolcats(LolcatsOptions options) => options with { SparseCache = Method.Kind == MethodKind.Lolcats ? SparseCache : 0 };

    /// <summary>Parses <c>NAME</c> followed by any of <c>+neg</c> (delta-rule methods), <c>+learned</c> (methods with a learned
    /// gate), <c>+rmsnorm</c> (methods with a normalizable read-out), <c>+sparseN</c> (methods with LoLA's sparse cache, N ≥ 1),
    /// <c>+posthoc</c> (with <c>+sparseN</c>: the cache attached after training without it), naming <paramref name="where"/> in errors.</summary>
    public static RecallLabMethod Parse(string text, string where)
    {
        var parts = text.Split('+');
        var method = LinearizationMethods.Get(parts[0], where);
        bool negative = false, learned = false, rmsnorm = false, posthoc = false;
        int sparse = 0;
        foreach (var part in parts.Skip(1))
        {
            string suffix = "+" + part;
            if (suffix.StartsWith(SparseSuffix, StringComparison.Ordinal) && suffix.Length > SparseSuffix.Length)
            {
                if (!int.TryParse(suffix[SparseSuffix.Length..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out sparse) || sparse < 1)
                    throw new LinearizeException($"{where}: '{text}': {SparseSuffix} takes a slot count of at least 1, as in {SparseSuffix}16");
                if (!method.SupportsSparseCache)
                    throw new LinearizeException($"{where}: '{text}': {SparseSuffix}N (LoLA's sparse cache) applies only to " +
                                                 string.Join(", ", LinearizationMethods.All.Where(m => m.SupportsSparseCache).Select(m => m.Name)));
                continue;
            }

            switch (suffix)
            {
                case PostHocSuffix:
                    posthoc = true;
                    break;
                case NegativeSuffix when method.IsDeltaRule:
                    negative = true;
                    break;
                case NegativeSuffix:
                    throw new LinearizeException($"{where}: '{text}': {NegativeSuffix} (β in (0, 2)) applies only to the delta-rule methods (liger-gdn, liger-deltanet)");
                case LearnedSuffix when method.Family is { } f && LigerOptions.SupportsLearnedGate(f):
                    learned = true;
                    break;
                case LearnedSuffix:
                    throw new LinearizeException($"{where}: '{text}': {LearnedSuffix} (the learned gate) applies only to liger-gla, liger-mamba2, liger-mlstm, liger-retention and liger-gdn");
                case RmsNormSuffix when method.Family is { } f && LigerOptions.SupportsOutputNorm(f):
                    rmsnorm = true;
                    break;
                case RmsNormSuffix:
                    throw new LinearizeException($"{where}: '{text}': {RmsNormSuffix} (the RMSNorm read-out) applies only to liger-gla, liger-hgrn2, liger-mamba2, liger-mlstm and liger-retention");
                default:
                    throw new LinearizeException($"{where}: '{text}': unknown variant '+{part}' (supported: {NegativeSuffix}, {LearnedSuffix}, {RmsNormSuffix}, {SparseSuffix}N, {PostHocSuffix})");
            }
        }

        if (posthoc && sparse == 0)
            throw new LinearizeException($"{where}: '{text}': {PostHocSuffix} attaches the sparse cache after training; it needs {SparseSuffix}N");
        return new RecallLabMethod(method, negative, learned, rmsnorm, sparse, posthoc);
    }
}
