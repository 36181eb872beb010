using System.Globalization;

namespace Linearize;

/// <summary>Counts with their noun in the right number ("1 record", "2 records"), for every message and report.</summary>
public static class Plural
{
    /// <param name="format">The number's format (e.g. <c>N0</c>), invariant culture.</param>
    public static string Of(long count, string singular, string format = "") =>
        $"{count.ToString(format, CultureInfo.InvariantCulture)} {(count == 1 ? singular : Pluralize(singular))}";

    private static string Pluralize(string singular) => singular switch
    {
        "matrix" => "matrices",
        "sequence" or "record" or "step" or "document" or "module" or "tensor" or "block" or "request" or "line" or "item" or "pair" => singular + "s",
        _ when singular.EndsWith('s') || singular.EndsWith('x') => singular + "es",
        _ => singular + "s",
    };
}
