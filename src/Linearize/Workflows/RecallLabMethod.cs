using Linearize.Checkpoints.Configuration;

namespace Linearize.Workflows;

/// <summary>
/// One converted row of the recall lab: a method, and the Liger variants it is converted with — for the delta-rule
/// families whether β may reach 2 (<see cref="LigerOptions.NegativeEigenvalues"/>, Grazzi et al. 2025), the learned
/// per-head gate (<see cref="LigerGate.Learned"/>, docs/METHODS.md §1.8) and the RMSNorm read-out
/// (<see cref="LigerOutputNorm.RmsNorm"/>, §1.9). Named as on the command line: the method's name with <c>+neg</c>,
/// <c>+learned</c>, <c>+rmsnorm</c> appended (<c>liger-gdn+neg</c>, <c>liger-gla+learned+rmsnorm</c>), which is also the
/// row's directory under <c>methods/</c>.
/// </summary>
public sealed record RecallLabMethod(LinearizationMethod Method, bool NegativeEigenvalues = false, bool LearnedGate = false, bool RmsNorm = false)
{
    public const string NegativeSuffix = "+neg";
    public const string LearnedSuffix = "+learned";
    public const string RmsNormSuffix = "+rmsnorm";

    public string Name => Method.Name + (NegativeEigenvalues ? NegativeSuffix : "") + (LearnedGate ? LearnedSuffix : "") + (RmsNorm ? RmsNormSuffix : "");

    public override string ToString() => Name;

    /// <summary>The row's Liger options over <paramref name="options"/>.</summary>
    public LigerOptions Liger(LigerOptions options) => options with
    {
        NegativeEigenvalues = NegativeEigenvalues,
        Gate = LearnedGate ? LigerGate.Learned : LigerGate.Keys,
        OutputNorm = RmsNorm ? LigerOutputNorm.RmsNorm : LigerOutputNorm.None,
    };

    /// <summary>Parses <c>NAME</c> followed by any of <c>+neg</c> (delta-rule methods), <c>+learned</c> (methods with a learned
    /// gate), <c>+rmsnorm</c> (methods with a normalizable read-out), naming <paramref name="where"/> in errors.</summary>
    public static RecallLabMethod Parse(string text, string where)
    {
        var parts = text.Split('+');
        var method = LinearizationMethods.Get(parts[0], where);
        bool negative = false, learned = false, rmsnorm = false;
        foreach (var part in parts.Skip(1))
        {
            switch ("+" + part)
            {
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
                    throw new LinearizeException($"{where}: '{text}': unknown variant '+{part}' (supported: {NegativeSuffix}, {LearnedSuffix}, {RmsNormSuffix})");
            }
        }

        return new RecallLabMethod(method, negative, learned, rmsnorm);
    }
}
