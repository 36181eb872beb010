using System.Globalization;

namespace Linearize.Checkpoints.Authors;

/// <summary>
/// The YAML subset the LoLCATs configs use: nested block maps by indentation, <c># comments</c>, scalars and flow
/// lists <c>[a, b]</c>. Anything else (block lists, anchors, multi-line strings) is an error naming the file and line,
/// never a guess.
/// </summary>
internal static class SimpleYaml
{
    public static Dictionary<string, object?> Load(string path)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: file not found");
        var root = new Dictionary<string, object?>(StringComparer.Ordinal);
        var stack = new List<(int Indent, Dictionary<string, object?> Map)> { (-1, root) };
        var lines = File.ReadAllLines(path);
        for (int n = 0; n < lines.Length; n++)
        {
            string raw = StripComment(lines[n]);
            if (raw.Trim().Length == 0)
                continue;
            int indent = raw.Length - raw.TrimStart(' ').Length;
            string line = raw.Trim();
            if (line.StartsWith('-') || line.StartsWith('&') || line.StartsWith('*') || raw.Contains('\t'))
                throw new LinearizeException($"{path}:{n + 1}: only maps, scalars and [flow, lists] are read");
            int colon = line.IndexOf(':');
            if (colon <= 0)
                throw new LinearizeException($"{path}:{n + 1}: expected 'key: value'");
            string key = Unquote(line[..colon].Trim());
            string value = line[(colon + 1)..].Trim();
            while (stack[^1].Indent >= indent)
                stack.RemoveAt(stack.Count - 1);
            var map = stack[^1].Map;
            if (value.Length == 0)
            {
                var child = new Dictionary<string, object?>(StringComparer.Ordinal);
                map[key] = child;
                stack.Add((indent, child));
            }
            else
            {
                map[key] = Scalar(value, path, n + 1);
            }
        }

        return root;
    }

    private static string StripComment(string line)
    {
        bool single = false, dbl = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (c == '\'' && !dbl) single = !single;
            else if (c == '"' && !single) dbl = !dbl;
            else if (c == '#' && !single && !dbl && (i == 0 || char.IsWhiteSpace(line[i - 1])))
                return line[..i];
        }

        return line;
    }

    private static object? Scalar(string text, string path, int line)
    {
        if (text.StartsWith('['))
        {
            if (!text.EndsWith(']'))
                throw new LinearizeException($"{path}:{line}: a flow list must close on its line");
            string inner = text[1..^1].Trim();
            return inner.Length == 0 ? new List<object?>()
                : inner.Split(',').Select(s => Scalar(s.Trim(), path, line)).ToList();
        }

        if (text is "null" or "~" or "Null" or "NULL")
            return null;
        if (text is "true" or "True")
            return true;
        if (text is "false" or "False")
            return false;
        if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l))
            return l;
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
            return d;
        return Unquote(text);
    }

    private static string Unquote(string s) =>
        s.Length >= 2 && (s[0] == '"' && s[^1] == '"' || s[0] == '\'' && s[^1] == '\'') ? s[1..^1] : s;
}
