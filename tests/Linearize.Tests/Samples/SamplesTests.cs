using System.Security.Cryptography;
using Linearize.Data;
using Linearize.Generation;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;

namespace Linearize.Tests.Samples;

/// <summary>
/// <c>samples/</c> is what <c>demo.sh</c> and the README's tour run on from a clean clone: the model resolves and
/// loads the way <c>pipeline --model samples/stories260K</c> loads it, the excerpt is long enough that the demo's
/// training text (from the 1,001st non-empty line) never contains an evaluation line (the first 200), and
/// <c>samples/README.md</c> states each file's true size and hash.
/// </summary>
[Collection("Torch")]
public sealed class SamplesTests
{
    [Fact]
    public void TheSampleModelResolvesToTheBinAndItsTokenizerAndTellsTheStory()
    {
        var source = ModelSource.Resolve(SampleData.Stories260KDir);
        Assert.Equal(ModelSourceKind.Llama2cFile, source.Kind);
        Assert.Equal("stories260K.bin", Path.GetFileName(source.Path));
        Assert.Equal("tok512.bin", Path.GetFileName(source.TokenizerPath));
        Assert.Equal(5, source.LoadConfig().NumHiddenLayers);

        var (model, tokenizer, _) = ModelLoader.LoadWithTokenizer(SampleData.Stories260KDir);
        using var _m = model;
        Assert.Equal((64, 512, 512), (model.Config.HiddenSize, model.Config.VocabSize, model.Config.MaxPositionEmbeddings));
        var prompt = tokenizer.Encode("Once upon a time");
        using var sampler = new Sampler(SamplingOptions.Greedy);
        var ids = new Generator(model).Generate(prompt, 24, sampler).ToList();
        // What run.c prints for this prompt: trained weights, read in llama2.c's order, with the right tokenizer.
        Assert.StartsWith(", there was a little girl named Lily", tokenizer.Decode(ids));
    }

    [Fact]
    public void TheDemosTrainingTextExcludesTheEvaluationLines()
    {
        string text = File.ReadAllText(SampleData.TinyStoriesExcerpt);
        var lines = text.Split('\n').Where(l => l.Trim().Length > 0).ToList();
        Assert.True(lines.Count >= 1000 + 500, $"{lines.Count} non-empty lines: too few to train on after --skip-docs 1000");
        Assert.EndsWith("\n\n", text); // cut at a paragraph boundary, never inside a story

        string training = TextDataset.Read(SampleData.TinyStoriesExcerpt, TextDataset.Split.Stream, skip: 1000).Single();
        Assert.StartsWith(lines[1000], training);
        foreach (var evaluated in lines.Take(200))
            Assert.DoesNotContain(evaluated, training);
    }

    [Fact]
    public void TheReadmeStatesEverySampleFilesSizeAndSha256()
    {
        string readme = File.ReadAllText(SampleData.Readme);
        var files = Directory.GetFiles(SampleData.Root, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != "README.md").ToList();
        Assert.Equal(3, files.Count);
        foreach (var file in files)
        {
            string relative = Path.GetRelativePath(SampleData.Root, file);
            string sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));
            string row = readme.Split('\n').SingleOrDefault(l => l.Contains($"`{relative}`", StringComparison.Ordinal))
                         ?? throw new Xunit.Sdk.XunitException($"samples/README.md has no row for `{relative}`");
            Assert.Contains(sha, row);
            Assert.Contains($"{new FileInfo(file).Length:N0}", row);
        }
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void TheSamplesAreTheSharedFilesSoTheReadmesNumbersApply()
    {
        Assert.Equal(File.ReadAllBytes(SharedData.Stories260KBin), File.ReadAllBytes(Path.Combine(SampleData.Stories260KDir, "stories260K.bin")));
        Assert.Equal(File.ReadAllBytes(SharedData.Tok512), File.ReadAllBytes(Path.Combine(SampleData.Stories260KDir, "tok512.bin")));
        byte[] excerpt = File.ReadAllBytes(SampleData.TinyStoriesExcerpt);
        byte[] val = File.ReadAllBytes(SharedData.TinyStoriesVal);
        Assert.True(excerpt.AsSpan().SequenceEqual(val.AsSpan(0, excerpt.Length)), "the excerpt is not the start of val.txt");
    }
}
