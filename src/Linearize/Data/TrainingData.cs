using Linearize.Tokenization;

namespace Linearize.Data;

/// <summary>
/// Turns data files into packed training and validation sequences: pre-tokenized JSONL (<see cref="TokenFile"/>, e.g.
/// recall tasks), Alpaca JSON/JSONL (prompt-masked) or plain text
/// (one document per line or per paragraph); a validation split held out before packing, either from a separate
/// file or the first records of a seeded shuffle.
/// </summary>
public static class TrainingData
{
    public sealed record Options
    {
        public TextDataset.Split TextSplit { get; init; } = TextDataset.Split.Lines;

        /// <summary>Plain text: skip the first N documents (e.g. to keep an evaluation set out of training).</summary>
        public int SkipDocuments { get; init; }

        public bool SkipBadRecords { get; init; }

        /// <summary>Records held out for validation when no validation file is given (Liger: 200), capped at 10 %.</summary>
        public int ValidationRecords { get; init; } = 200;

        public int SequenceLength { get; init; } = 1024;

        public int Seed { get; init; }
    }

    /// <param name="HeldOutRecords">Records of the training file held out for validation (0 with a validation file).</param>
    /// <param name="HeldOutSequences">True when, with too few records to hold some out, packed sequences were held out instead.</param>
    public sealed record Result(List<TrainingExample> Train, List<TrainingExample> Validation, int Records, int SkippedRecords,
        long TrainTokens, long LabelledTrainTokens, int HeldOutRecords = 0, bool HeldOutSequences = false);

    public static Result Prepare(string path, string? validationPath, TextTokenizer tokenizer, Options options)
    {
        var (examples, skipped) = Load(path, tokenizer, options);
        List<TrainingExample> trainExamples, valExamples;
        int skippedVal = 0, heldRecords = 0;
        bool heldSequences = false;
        if (validationPath is not null)
        {
            trainExamples = examples;
            (valExamples, skippedVal) = Load(validationPath, tokenizer, options with { SkipDocuments = 0 });
        }
        else
        {
            var order = SequencePacker.Shuffle(examples.Count, options.Seed);
            int held = Math.Min(options.ValidationRecords, examples.Count / 10);
            heldRecords = held;
            valExamples = order.Take(held).Select(i => examples[i]).ToList();
            trainExamples = order.Skip(held).Select(i => examples[i]).ToList();
        }

        var train = SequencePacker.Pack(trainExamples, options.SequenceLength);
        var validation = SequencePacker.Pack(valExamples, options.SequenceLength);
        if (validationPath is null && validation.Count == 0 && train.Count >= 20 && options.ValidationRecords > 0)
        {
            // Too few documents to hold some out (e.g. one text stream): hold out 5 % of the packed sequences.
            var order = SequencePacker.Shuffle(train.Count, options.Seed);
            int held = Math.Max(1, train.Count / 20);
            heldSequences = true;
            validation = order.Take(held).Select(i => train[i]).ToList();
            train = order.Skip(held).Order().Select(i => train[i]).ToList();
        }

        return new Result(train, validation, examples.Count, skipped + skippedVal, train.Sum(e => (long)e.InputIds.Length),
            train.Sum(e => (long)e.LabelledTokens), heldRecords, heldSequences);
    }

    private static (List<TrainingExample>, int) Load(string path, TextTokenizer tokenizer, Options options)
    {
        if (TokenFile.IsTokenFile(path))
        {
            var examples = TokenFile.Read(path).Select(x => x.Example).ToList();
            int vocab = tokenizer.VocabSize;
            if (examples.SelectMany(e => e.InputIds).Any(i => i >= vocab))
                throw new LinearizeException($"{path}: token ids reach past the vocabulary of {vocab}");
            return (examples, 0);
        }

        if (AlpacaDataset.IsAlpacaPath(path))
        {
            var (records, skipped) = AlpacaDataset.Read(path, options.SkipBadRecords);
            return (records.Select(r => AlpacaDataset.Tokenize(r, tokenizer)).ToList(), skipped);
        }

        var docs = TextDataset.Read(path, options.TextSplit, options.SkipDocuments);
        return (docs.Select(d => TextDataset.Tokenize(d, tokenizer)).ToList(), 0);
    }
}
