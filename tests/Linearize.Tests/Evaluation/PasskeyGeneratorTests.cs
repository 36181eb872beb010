using Linearize.Evaluation.Passkey;
using Linearize.Tests.Fixtures;
using Linearize.Tokenization;

namespace Linearize.Tests.Evaluation;

/// <summary>Passkey samples (docs/EVALUATION.md §4) on stories260K's tokenizer and the TinyStories excerpt in samples/.</summary>
public sealed class PasskeyGeneratorTests
{
    private static readonly TextTokenizer Tokenizer = TokenizerLoader.Load(Path.Combine(SampleData.Stories260KDir, "tok512.bin"));
    private static readonly FillerText Text = FillerText.Read(SampleData.TinyStoriesExcerpt);
    private static readonly double[] Depths = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1];

    private static List<PasskeySample> Make(int[] lengths, int perCell = 3, int seed = 1) =>
        new PasskeyGenerator(Tokenizer, Text).Generate(new PasskeyOptions { Lengths = lengths, Depths = Depths, SamplesPerCell = perCell, Seed = seed });

    private static int[] NeedleIds(PasskeySample s) => s.PromptIds.AsSpan(s.NeedlePosition, s.PromptIds.Length - s.FillerTokens - s.FillerStart - QuestionIds.Length).ToArray();

    private static readonly int[] QuestionIds = Tokenizer.Encode(". " + PasskeyGenerator.Question, false).Skip(Tokenizer.Encode(".", false).Count).ToArray();

    [Fact]
    public void EverySampleIsExactlyItsLengthAndEndsWithTheQuestion()
    {
        var samples = Make([128, 300, 1024]);
        Assert.Equal(3 * Depths.Length * 3, samples.Count);
        foreach (var s in samples)
        {
            Assert.Equal(s.Length, s.PromptIds.Length + s.AnswerIds.Length);
            Assert.Equal(Tokenizer.BosId, s.PromptIds[0]);
            Assert.Equal(1, s.FillerStart);
            Assert.Equal(QuestionIds, s.PromptIds[^QuestionIds.Length..]);
            Assert.EndsWith("What is the pass key? The pass key is", s.Prompt);
            Assert.Equal(s.Passkey, s.Answer.Trim());
            Assert.Matches("^[1-9][0-9]{4}$", s.Passkey);
            Assert.Equal(s.AnswerIds, Tokenizer.Encode(". " + PasskeyGenerator.Question + " " + s.Passkey, false).Skip(Tokenizer.Encode(". " + PasskeyGenerator.Question, false).Count));
            Assert.Contains($"The pass key is {s.Passkey}. Remember it. {s.Passkey} is the pass key.", s.Prompt);
            Assert.Equal(s.Prompt, Tokenizer.Decode(s.PromptIds));
        }
    }

    [Fact]
    public void TheNeedleSitsAtItsDepthWithinOneFillerSentence()
    {
        var samples = Make([256, 512, 1024], perCell: 4);
        // The longest sentence any sample could have been built from bounds how far a boundary can be from the target.
        int longest = Text.Sentences.Max(x => Tokenizer.Encode(". " + x, false).Count);
        foreach (var s in samples)
        {
            double target = s.FillerStart + s.Depth * s.FillerTokens;
            Assert.True(Math.Abs(s.NeedlePosition - target) <= longest, $"length {s.Length}, depth {s.Depth}: needle at {s.NeedlePosition}, target {target:F1}");
            var needle = NeedleIds(s);
            Assert.Equal(PasskeyGenerator.Needle(s.Passkey), Tokenizer.Decode(needle).Trim());
            if (s.Depth == 0)
                Assert.Equal(s.FillerStart, s.NeedlePosition); // right after BOS
            if (s.Depth == 1)
                Assert.Equal(s.PromptIds.Length - QuestionIds.Length, s.NeedlePosition + needle.Length); // right before the question
        }

        // Deeper asks never place the needle earlier, and the same sample keeps its key and filler at every depth.
        foreach (var group in samples.GroupBy(s => (s.Length, s.Index)))
        {
            var byDepth = group.OrderBy(s => s.Depth).ToList();
            Assert.Single(byDepth.Select(s => s.Passkey).Distinct());
            Assert.True(byDepth.Zip(byDepth.Skip(1)).All(p => p.First.NeedlePosition <= p.Second.NeedlePosition));
            var fillers = byDepth.Select(s => string.Join(",", s.PromptIds.Take(s.NeedlePosition).Concat(s.PromptIds.Skip(s.NeedlePosition + NeedleIds(s).Length)))).Distinct();
            Assert.Single(fillers);
        }

        // On average over many samples the needle lands close to the depth asked for.
        foreach (double d in Depths)
            Assert.InRange(samples.Where(s => s.Depth == d && s.Length == 1024).Average(s => s.NeedleDepth), d - 0.05, d + 0.05);
    }

    [Fact]
    public void TheSeedFixesTheSamples()
    {
        var a = Make([200], seed: 5);
        var b = Make([200], seed: 5);
        var c = Make([200], seed: 6);
        Assert.Equal(a.Select(s => string.Join(",", s.PromptIds)), b.Select(s => string.Join(",", s.PromptIds)));
        Assert.NotEqual(a.Select(s => s.Passkey), c.Select(s => s.Passkey));
    }

    [Fact]
    public void ALengthTooShortForTheNeedleAndQuestionIsRefused()
    {
        var e = Assert.Throws<LinearizeException>(() => Make([40]));
        Assert.StartsWith("--lengths: 40 is too short; the needle, question and answer alone take", e.Message);
    }

    [Fact]
    public void BadOptionsNameTheirFlag()
    {
        Assert.StartsWith("--depths:", Assert.Throws<LinearizeException>(() => new PasskeyOptions { Depths = [1.5] }.Validate()).Message);
        Assert.StartsWith("--lengths:", Assert.Throws<LinearizeException>(() => new PasskeyOptions { Lengths = [0] }.Validate()).Message);
        Assert.StartsWith("--digits", Assert.Throws<LinearizeException>(() => new PasskeyOptions { Digits = 10 }.Validate()).Message);
        Assert.StartsWith("--samples-per-cell", Assert.Throws<LinearizeException>(() => new PasskeyOptions { SamplesPerCell = 0 }.Validate()).Message);
    }

    [Fact]
    public void TheFileRoundTripsAndRefusesAnotherTokenizersSamples()
    {
        using var dir = new TempDir();
        var samples = Make([128], perCell: 2);
        string path = dir.File("p.jsonl");
        PasskeyFile.Write(path, samples);
        var back = PasskeyFile.Read(path);
        Assert.Equal(samples.Select(s => (s.Length, s.Depth, s.Index, s.Passkey, s.NeedlePosition, string.Join(",", s.PromptIds), string.Join(",", s.AnswerIds), s.Prompt)),
            back.Select(s => (s.Length, s.Depth, s.Index, s.Passkey, s.NeedlePosition, string.Join(",", s.PromptIds), string.Join(",", s.AnswerIds), s.Prompt)));
        PasskeyEvaluator.CheckTokenizer(back, Tokenizer, 512, path);

        var other = new IdTokenizer(512);
        Assert.Contains("made with another tokenizer", Assert.Throws<LinearizeException>(() => PasskeyEvaluator.CheckTokenizer(back, other, 512, path)).Message);
        Assert.Contains("outside the model's vocabulary of 300", Assert.Throws<LinearizeException>(() => PasskeyEvaluator.CheckTokenizer(back, Tokenizer, 300, path)).Message);

        File.AppendAllText(path, "{\"length\": 5}\n");
        var e = Assert.Throws<LinearizeException>(() => PasskeyFile.Read(path));
        Assert.StartsWith($"{path}:{samples.Count + 1}: not a passkey sample", e.Message);
    }
}
