using Linearize.Data;
using Linearize.Tests.Fixtures;
using Linearize.Tokenization;

namespace Linearize.Tests.Training;

public sealed class DataTests
{
    [SharedFact("models/stories260K/tok512.bin")]
    public void AlpacaPromptIsMaskedAndEosAppended()
    {
        var tok = Llama2cTokenizer.Load(SharedData.Tok512);
        var record = new AlpacaDataset.Record("Say hi.", "", "Hi there!");
        var example = AlpacaDataset.Tokenize(record, tok);
        int promptLength = tok.Encode(AlpacaDataset.Prompt(record), addBos: true).Count;
        Assert.All(example.Labels.Take(promptLength), l => Assert.Equal(TrainingExample.IgnoreIndex, l));
        Assert.Equal(example.InputIds.Skip(promptLength), example.Labels.Skip(promptLength));
        Assert.Equal(2, example.InputIds[^1]);
        Assert.StartsWith("Below is an instruction that describes a task. Write", AlpacaDataset.Prompt(record));
        Assert.Contains("### Input:\nctx", AlpacaDataset.Prompt(record with { Input = "ctx" }));
    }

    [Fact]
    public void MalformedRecordsNameFileAndLineOrAreSkipped()
    {
        using var dir = new TempDir();
        string path = dir.File("d.jsonl");
        File.WriteAllText(path, "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}\n\n{\"instruction\": 3}\n{not json\n");
        var e = Assert.Throws<LinearizeException>(() => AlpacaDataset.Read(path, skipBad: false));
        Assert.StartsWith($"{path}:3: ", e.Message);
        var (records, skipped) = AlpacaDataset.Read(path, skipBad: true);
        Assert.Single(records);
        Assert.Equal(2, skipped);
    }

    [Fact]
    public void TextSplitsIntoLinesParagraphsOrOneStream()
    {
        using var dir = new TempDir();
        string path = dir.File("t.txt");
        File.WriteAllText(path, "a b\nc\n\nd e\n\nf\n");
        Assert.Equal(new[] { "a b", "c", "d e", "f" }, TextDataset.Read(path, TextDataset.Split.Lines));
        Assert.Equal(new[] { "a b\nc", "d e", "f" }, TextDataset.Read(path, TextDataset.Split.Paragraphs));
        Assert.Equal(new[] { "d e\n\nf\n" }, TextDataset.Read(path, TextDataset.Split.Stream, skip: 2));
        Assert.Throws<LinearizeException>(() => TextDataset.Read(path, TextDataset.Split.Stream, skip: 4));
    }

    [Fact]
    public void PackingDropsSequencesWithoutLabels()
    {
        var masked = new TrainingExample(Enumerable.Range(0, 10).ToArray(), Enumerable.Repeat(TrainingExample.IgnoreIndex, 10).ToArray());
        var labelled = new TrainingExample(Enumerable.Range(0, 10).ToArray(), Enumerable.Range(0, 10).ToArray());
        var packed = SequencePacker.Pack(new[] { masked, labelled, masked }, 5);
        Assert.Equal(2, packed.Count); // 30 tokens → 6 chunks, 4 without any label
        Assert.Equal(SequencePacker.Shuffle(50, 7), SequencePacker.Shuffle(50, 7));
        Assert.NotEqual(SequencePacker.Shuffle(50, 7), SequencePacker.Shuffle(50, 8));
    }
}
