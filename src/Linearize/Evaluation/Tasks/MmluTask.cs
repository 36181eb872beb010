using System.Globalization;
using CsvHelper;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// MMLU (<c>tasks/mmlu/default</c>): per subject, the description
/// <c>"The following are multiple choice questions (with answers) about {subject with _ → space}.\n\n"</c>, then
/// <c>num_fewshot</c> shots — the first dev items in file order (<c>first_n</c> sampler), each
/// <c>doc_to_text + " " + letter + "\n\n"</c> — then <c>"{question.strip()}\nA. …\nD. {choices[3]}\nAnswer:"</c>; the choices are
/// <c>" A"</c> … <c>" D"</c>; acc only. The group score is the micro average over every item (weight_by_size), and so
/// are the four categories (the subjects' <c>tag</c>s in lm-eval).
/// </summary>
public sealed class MmluTask : EvalTask
{
    /// <summary>Each subject's category, as lm-eval's <c>_generate_configs.py</c> tags it (stem 19, other 13,
    /// humanities 13, social_sciences 12).</summary>
    public static readonly IReadOnlyDictionary<string, string> Categories = new Dictionary<string, string>
    {
        ["abstract_algebra"] = "stem", ["anatomy"] = "stem", ["astronomy"] = "stem", ["business_ethics"] = "other",
        ["clinical_knowledge"] = "other", ["college_biology"] = "stem", ["college_chemistry"] = "stem",
        ["college_computer_science"] = "stem", ["college_mathematics"] = "stem", ["college_medicine"] = "other",
        ["college_physics"] = "stem", ["computer_security"] = "stem", ["conceptual_physics"] = "stem",
        ["econometrics"] = "social_sciences", ["electrical_engineering"] = "stem", ["elementary_mathematics"] = "stem",
        ["formal_logic"] = "humanities", ["global_facts"] = "other", ["high_school_biology"] = "stem",
        ["high_school_chemistry"] = "stem", ["high_school_computer_science"] = "stem",
        ["high_school_european_history"] = "humanities", ["high_school_geography"] = "social_sciences",
        ["high_school_government_and_politics"] = "social_sciences", ["high_school_macroeconomics"] = "social_sciences",
        ["high_school_mathematics"] = "stem", ["high_school_microeconomics"] = "social_sciences", ["high_school_physics"] = "stem",
        ["high_school_psychology"] = "social_sciences", ["high_school_statistics"] = "stem", ["high_school_us_history"] = "humanities",
        ["high_school_world_history"] = "humanities", ["human_aging"] = "other", ["human_sexuality"] = "social_sciences",
        ["international_law"] = "humanities", ["jurisprudence"] = "humanities", ["logical_fallacies"] = "humanities",
        ["machine_learning"] = "stem", ["management"] = "other", ["marketing"] = "other", ["medical_genetics"] = "other",
        ["miscellaneous"] = "other", ["moral_disputes"] = "humanities", ["moral_scenarios"] = "humanities", ["nutrition"] = "other",
        ["philosophy"] = "humanities", ["prehistory"] = "humanities", ["professional_accounting"] = "other",
        ["professional_law"] = "humanities", ["professional_medicine"] = "other", ["professional_psychology"] = "social_sciences",
        ["public_relations"] = "social_sciences", ["security_studies"] = "social_sciences", ["sociology"] = "social_sciences",
        ["us_foreign_policy"] = "social_sciences", ["virology"] = "other", ["world_religions"] = "humanities",
    };

    private static readonly string[] Letters = { "A", "B", "C", "D" };

    public override string Name => "mmlu";

    public override TaskOutputKind Kind => TaskOutputKind.MultipleChoice;

    public override IReadOnlyList<string> Files => Categories.Keys.Order(StringComparer.Ordinal)
        .SelectMany(s => new[] { $"mmlu/dev/{s}_dev.csv", $"mmlu/test/{s}_test.csv" }).ToList();

    public sealed record Item(string Question, string[] Choices, int Answer);

    public override IReadOnlyList<TaskDocument> Load(string dataDirectory, int numFewshot, int? limit)
    {
        if (numFewshot is < 0 or > 5)
            throw new LinearizeException($"--num-fewshot {numFewshot}: mmlu has 5 dev items per subject (0..5)");
        var result = new List<TaskDocument>();
        foreach (var subject in Categories.Keys.Order(StringComparer.Ordinal))
        {
            var dev = Read(RequireFile(dataDirectory, $"mmlu/dev/{subject}_dev.csv"));
            var test = Read(RequireFile(dataDirectory, $"mmlu/test/{subject}_test.csv"));
            if (dev.Count < numFewshot)
                throw new LinearizeException($"{Path.Combine(dataDirectory, $"mmlu/dev/{subject}_dev.csv")}: {Plural.Of(dev.Count, "item")}, fewer than --num-fewshot {numFewshot}");
            string prefix = Prefix(subject, dev.Take(numFewshot));
            int count = 0;
            foreach (var item in test)
            {
                if (count == limit)
                    break;
                var requests = Letters.Select(l => new TaskRequest(prefix + DocToText(item), " " + l)).ToList();
                result.Add(new TaskDocument(count++, requests, item.Answer, Letters, subject));
            }
        }

        return result;
    }

    /// <summary>The description and the rendered shots.</summary>
    public static string Prefix(string subject, IEnumerable<Item> shots) =>
        $"The following are multiple choice questions (with answers) about {subject.Replace('_', ' ')}.\n\n" +
        string.Concat(shots.Select(s => DocToText(s) + " " + Letters[s.Answer] + "\n\n"));

    /// <summary><c>"{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:"</c>; only the question is stripped.</summary>
    public static string DocToText(Item item) =>
        $"{PythonStrip(item.Question)}\nA. {item.Choices[0]}\nB. {item.Choices[1]}\nC. {item.Choices[2]}\nD. {item.Choices[3]}\nAnswer:";

    /// <summary>Python's <c>str.strip()</c>: removes every leading and trailing whitespace code point.</summary>
    internal static string PythonStrip(string s) => s.Trim();

    /// <summary>Reads <c>question,choice0,choice1,choice2,choice3,answer</c> with an RFC 4180 parser (quoted commas and newlines).</summary>
    public static List<Item> Read(string path)
    {
        // CsvHelper: RFC 4180 quoting, line breaks inside quotes, nothing trimmed (the choices are used verbatim).
        using var csv = CsvReader.FromFile(path, new CsvReaderOptions { TrimWhitespace = false, SkipEmptyLines = false });
        if (!csv.Headers.SequenceEqual(new[] { "question", "choice0", "choice1", "choice2", "choice3", "answer" }))
            throw new LinearizeException($"{path}: expected the header question,choice0,choice1,choice2,choice3,answer");
        var items = new List<Item>();
        while (csv.Read())
        {
            if (csv.FieldCount != 6)
                throw new LinearizeException($"{path}: row {items.Count + 2} has {csv.FieldCount} fields, expected 6");
            string answer = csv.GetString(5);
            if (!int.TryParse(answer, NumberStyles.Integer, CultureInfo.InvariantCulture, out int a) || a is < 0 or > 3)
                throw new LinearizeException($"{path}: row {items.Count + 2}: answer '{answer}' is not 0..3");
            items.Add(new Item(csv.GetString(0), Enumerable.Range(1, 4).Select(i => csv.GetString(i)).ToArray(), a));
        }

        return items;
    }
}
