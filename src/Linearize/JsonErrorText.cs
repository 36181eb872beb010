using System.Text.Json;
using System.Text.RegularExpressions;

namespace Linearize;

/// <summary>
/// A JSON parse error as one short clause: <c>line 3, column 14: 'x' is an invalid start of a value</c>. .NET's messages
/// end in a zero-based "LineNumber: 0 | BytePositionInLine: 5." that contradicts a file:line prefix; this reports both
/// one-based instead.
/// </summary>
public static partial class JsonErrorText
{
    public static string Describe(JsonException e)
    {
        // One line: the message may quote raw input, line breaks included.
        string reason = Suffix().Replace(e.Message, "").TrimEnd('.', ' ').Replace("\r", "\\r").Replace("\n", "\\n").Replace("\t", "\\t");
        return e.LineNumber is long line
            ? $"line {line + 1}, column {(e.BytePositionInLine ?? 0) + 1}: {reason}"
            : reason;
    }

    [GeneratedRegex(@"\s*(Path: \S*\s*\|\s*)?LineNumber: \d+ \| BytePositionInLine: \d+\.?$")]
    private static partial Regex Suffix();
}
