using System.Diagnostics;
using System.Text;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Evaluation;

/// <summary>
/// Perplexity under two exactly stated protocols (those of <c>../shared/golden/stories260K-ppl*.json</c>):
/// <list type="bullet">
/// <item><b>per-line</b>: every non-empty line is a document, encoded on its own with BOS, truncated to
/// <c>maxLength</c>; every token after BOS is scored given all before it.</item>
/// <item><b>rolling</b>: the text is encoded once (BOS + text) and scored in windows of <c>maxLength</c>; with
/// <c>stride == maxLength</c> the windows are disjoint and each window's first token is not scored; with a
/// smaller stride each window re-reads <c>maxLength − stride</c> earlier tokens as context and scores only the
/// tokens not scored before (lm-evaluation-harness / HF "sliding window" perplexity), so every token but the
/// first is scored exactly once.</item>
/// </list>
/// </summary>
public sealed class PerplexityEvaluator
{
    private readonly LlamaForCausalLM _model;
    private readonly TextTokenizer _tokenizer;

    public PerplexityEvaluator(LlamaForCausalLM model, TextTokenizer tokenizer, int maxLength = 512, int batchTokens = 8192)
    {
        if (maxLength < 2)
            throw new LinearizeException($"--max-length must be at least 2, got {maxLength}");
        _model = model;
        _tokenizer = tokenizer;
        MaxLength = maxLength;
        BatchTokens = batchTokens;
    }

    public int MaxLength { get; }

    /// <summary>Upper bound on padded tokens per forward pass in the per-line protocol.</summary>
    public int BatchTokens { get; }

    /// <summary>Byte offset of the first byte of <paramref name="path"/> that is not valid UTF-8, or null when it all
    /// is (the readers decode such bytes as U+FFFD and would score them silently).</summary>
    public static long? FirstInvalidUtf8(string path)
    {
        var decoder = new UTF8Encoding(false, throwOnInvalidBytes: true).GetDecoder();
        var buffer = new byte[1 << 16];
        var chars = new char[(1 << 16) + 8];
        long offset = 0;
        using var stream = File.OpenRead(path);
        int n;
        while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            try
            {
                decoder.GetChars(buffer, 0, n, chars, 0, flush: false);
            }
            catch (DecoderFallbackException e)
            {
                return offset + Math.Max(0, e.Index);
            }

            offset += n;
        }

        try
        {
            decoder.GetChars(Array.Empty<byte>(), 0, 0, chars, 0, flush: true);
        }
        catch (DecoderFallbackException)
        {
            return offset - 1; // the file ends inside a character
        }

        return null;
    }

    /// <summary>The non-empty lines of <paramref name="path"/> (line endings stripped), at most <paramref name="maxDocs"/>.</summary>
    public static List<string> ReadLines(string path, int? maxDocs)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: text file not found");
        var docs = new List<string>();
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            if (line.Trim().Length == 0)
                continue;
            docs.Add(line);
            if (docs.Count == maxDocs)
                break;
        }

        if (docs.Count == 0)
            throw new LinearizeException($"{path}: no non-empty lines to score");
        return docs;
    }

    /// <summary>The text of <paramref name="path"/> up to and including its <paramref name="maxDocs"/>-th non-empty line
    /// (with that line's newline), or the whole file.</summary>
    public static string ReadPrefix(string path, int? maxDocs)
    {
        if (!File.Exists(path))
            throw new LinearizeException($"{path}: text file not found");
        string text = File.ReadAllText(path, Encoding.UTF8);
        if (maxDocs is null)
            return text;
        int seen = 0, pos = 0;
        while (pos < text.Length)
        {
            int end = text.IndexOf('\n', pos);
            int next = end < 0 ? text.Length : end + 1;
            if (text.AsSpan(pos, next - pos).Trim().Length > 0 && ++seen == maxDocs)
                return text[..next];
            pos = next;
        }

        return text;
    }

    public PerplexityResult PerLine(IReadOnlyList<string> documents, IProgress<(int Done, int Total)>? progress = null)
    {
        var sequences = documents.Select(d => _tokenizer.Encode(d, addBos: true).Take(MaxLength).ToArray()).ToList();
        var watch = Stopwatch.StartNew();
        double nll = 0;
        long tokens = 0;
        // Longest first, so each batch pads little; right padding needs no mask under causal attention.
        var order = Enumerable.Range(0, sequences.Count).OrderByDescending(i => sequences[i].Length).ToList();
        int done = 0;
        for (int start = 0; start < order.Count;)
        {
            int longest = sequences[order[start]].Length;
            int count = Math.Max(1, Math.Min(order.Count - start, BatchTokens / Math.Max(1, longest)));
            var batch = order.Skip(start).Take(count).Select(i => sequences[i]).ToList();
            var (sum, n) = ScoreBatch(batch, scoreFrom: batch.Select(_ => 1).ToList());
            nll += sum;
            tokens += n;
            start += count;
            done += count;
            progress?.Report((done, order.Count));
        }

        return Result("per-line", nll, tokens, documents.Count, sequences.Sum(s => (long)s.Length), watch.Elapsed.TotalSeconds);
    }

    public PerplexityResult Rolling(string text, int? stride = null, IProgress<(int Done, int Total)>? progress = null)
    {
        int step = stride ?? MaxLength;
        if (step < 1 || step > MaxLength)
            throw new LinearizeException($"--stride must be between 1 and --max-length ({MaxLength}), got {step}");
        var ids = _tokenizer.Encode(text, addBos: true).ToArray();
        var watch = Stopwatch.StartNew();
        double nll = 0;
        long tokens = 0;
        var windows = new List<(int Begin, int End, int ScoreFrom)>();
        if (step == MaxLength)
        {
            for (int begin = 0; begin < ids.Length; begin += MaxLength)
                windows.Add((begin, Math.Min(begin + MaxLength, ids.Length), 1));
        }
        else
        {
            int previousEnd = 0;
            for (int begin = 0; previousEnd < ids.Length; begin += step)
            {
                int end = Math.Min(begin + MaxLength, ids.Length);
                // Score the tokens after previousEnd; a window's first token never has context inside it.
                windows.Add((begin, end, Math.Max(1, previousEnd - begin)));
                previousEnd = end;
            }
        }

        for (int w = 0; w < windows.Count; w++)
        {
            var (begin, end, scoreFrom) = windows[w];
            if (end - begin < 2)
                continue;
            var (sum, n) = ScoreBatch(new List<int[]> { ids[begin..end] }, new List<int> { scoreFrom });
            nll += sum;
            tokens += n;
            progress?.Report((w + 1, windows.Count));
        }

        return Result("rolling", nll, tokens, 1, ids.Length, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Perplexity over zero predicted tokens is undefined: an error, never "NLL 0, perplexity 1".</summary>
    private static PerplexityResult Result(string protocol, double nll, long tokens, int documents, long textTokens, double seconds) =>
        tokens > 0
            ? new PerplexityResult(protocol, nll / tokens, tokens, documents, textTokens, seconds)
            : throw new LinearizeException($"no tokens to score ({protocol}): the text is empty or shorter than two tokens");

    /// <summary>Sum of NLL (and count) of tokens <c>scoreFrom[b]..len-1</c> of each sequence, right-padded into one batch.</summary>
    private (double Sum, long Count) ScoreBatch(List<int[]> batch, List<int> scoreFrom)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        int longest = batch.Max(s => s.Length);
        var input = new long[batch.Count * longest];
        var targets = new long[batch.Count * longest];
        var weights = new float[batch.Count * longest];
        for (int b = 0; b < batch.Count; b++)
        {
            for (int t = 0; t < batch[b].Length; t++)
                input[b * longest + t] = batch[b][t];
            for (int t = scoreFrom[b]; t < batch[b].Length; t++)
            {
                // logits at t-1 predict token t
                targets[b * longest + t - 1] = batch[b][t];
                weights[b * longest + t - 1] = 1;
            }
        }

        var ids = torch.tensor(input).view(batch.Count, longest);
        var logits = _model.Forward(ids);
        var logp = logits.log_softmax(-1).gather(-1, torch.tensor(targets).view(batch.Count, longest, 1)).squeeze(-1);
        var mask = torch.tensor(weights).view(batch.Count, longest);
        double sum = -(logp.to(ScalarType.Float64) * mask).sum().item<double>();
        long count = (long)mask.sum().item<float>();
        return (sum, count);
    }
}
