using Linearize.Checkpoints.Configuration;

namespace Linearize.Workflows;

/// <summary>
/// One converted row of the recall lab: a method, and for the delta-rule families whether β may reach 2
/// (<see cref="LigerOptions.NegativeEigenvalues"/>, Grazzi et al. 2025; docs/METHODS.md). Named as on the command
/// line: the method's name, <c>+neg</c> appended for negative eigenvalues (<c>liger-gdn+neg</c>), which is also the
/// row's directory under <c>methods/</c>.
/// </summary>
public sealed record RecallLabMethod(LinearizationMethod Method, bool NegativeEigenvalues = false)
{
    public const string NegativeSuffix = "+neg";

    public string Name => NegativeEigenvalues ? Method.Name + NegativeSuffix : Method.Name;

    public override string ToString() => Name;

    /// <summary>Parses <c>NAME</c> or <c>NAME+neg</c> (delta-rule methods only), naming <paramref name="where"/> in errors.</summary>
    public static RecallLabMethod Parse(string text, string where)
    {
        bool negative = text.EndsWith(NegativeSuffix, StringComparison.Ordinal);
        var method = LinearizationMethods.Get(negative ? text[..^NegativeSuffix.Length] : text, where);
        if (negative && !method.IsDeltaRule)
            throw new LinearizeException($"{where}: '{text}': {NegativeSuffix} (β in (0, 2)) applies only to the delta-rule methods (liger-gdn, liger-deltanet)");
        return new RecallLabMethod(method, negative);
    }
}
