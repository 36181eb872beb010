using System.Numerics.Tensors;
using Linearize.Inference;
using Linearize.Tokenization;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// <see cref="ILoglikelihoodScorer"/> on the decode engine. Every context is prefilled once and its sequence cloned for
/// each continuation, so a choice costs only its own tokens; contexts that share a long token prefix (MMLU's
/// description and shots) prefill the prefix once and clone it. A request longer than <c>max_length + 1</c> is
/// left-truncated as lm-eval does and scored in one pass. Log-softmax in float32 per row, sums in float64 — the
/// numbers of <see cref="LoglikelihoodScorer"/>, up to the float32 rounding of the engine's products.
/// </summary>
public sealed class EngineLoglikelihoodScorer : ILoglikelihoodScorer
{
    private readonly DecodeEngine _engine;
    private readonly RequestEncoder _encoder;
    private float[] _rows = Array.Empty<float>();

    /// <param name="maxLength">The model's context (lm-eval: <c>max_position_embeddings</c>).</param>
    public EngineLoglikelihoodScorer(DecodeEngine engine, TextTokenizer tokenizer, int maxLength)
    {
        if (maxLength < 2)
            throw new LinearizeException($"max length must be at least 2, got {maxLength}");
        _engine = engine;
        _encoder = new RequestEncoder(tokenizer);
        MaxLength = maxLength;
    }

    public int MaxLength { get; }

    public bool AddsBos => _encoder.AddsBos;

    /// <summary>Shortest token prefix worth sharing across contexts.</summary>
    public int MinSharedPrefix { get; init; } = 64;

    public EncodedRequest Encode(TaskRequest request) => _encoder.Encode(request);

    public RequestScore[] Score(IReadOnlyList<EncodedRequest> requests, Action<int, long>? progress = null, CancellationToken cancel = default)
    {
        var scores = new RequestScore[requests.Count];
        for (int i = 0; i < requests.Count; i++)
            if (requests[i].Continuation.Length == 0)
                throw new LinearizeException($"request {i}: empty continuation");
        int done = 0;
        long tokens = 0;

        foreach (int i in Enumerable.Range(0, requests.Count).Where(i => requests[i].Length > MaxLength + 1))
        {
            cancel.ThrowIfCancellationRequested();
            scores[i] = ScoreTruncated(requests[i]);
            progress?.Invoke(++done, tokens += Math.Min(requests[i].Length, MaxLength));
        }

        // Groups sharing a context, in token order so that contexts with a common prefix are neighbours.
        var groups = Enumerable.Range(0, requests.Count).Where(i => requests[i].Length <= MaxLength + 1)
            .GroupBy(i => requests[i].Context, TokenSequenceComparer.Instance)
            .Select(g => g.ToArray())
            .OrderBy(g => requests[g[0]].Context, TokenSequenceComparer.Instance)
            .ToList();
        foreach (var (prefixLength, members) in SharedPrefixes.Families(groups.Select(g => requests[g[0]].Context).ToList(), MinSharedPrefix))
        {
            cancel.ThrowIfCancellationRequested();
            using var prefix = prefixLength > 0 ? _engine.CreateSequence() : null;
            if (prefix is not null)
            {
                _engine.Prefill(prefix, requests[groups[members[0]][0]].Context.AsSpan(0, prefixLength));
                tokens += prefixLength;
            }

            foreach (int m in members)
            {
                var group = groups[m];
                var context = requests[group[0]].Context;
                using var sequence = prefix?.Clone() ?? _engine.CreateSequence();
                var first = _engine.Prefill(sequence, context.AsSpan(prefixLength)).ToArray(); // predicts each cont[0]
                tokens += context.Length - prefixLength;
                foreach (int i in group)
                {
                    scores[i] = ScoreContinuation(sequence, first, requests[i].Continuation, reuse: i == group[^1]);
                    tokens += requests[i].Continuation.Length - 1;
                }

                done += group.Length;
                progress?.Invoke(done, tokens);
            }
        }

        return scores;
    }

    /// <summary>One request in one pass: <c>inp = (ctx + cont)[-(max_length+1):][:-1]</c>, the last |cont| rows scored.</summary>
    public RequestScore ScoreTruncated(EncodedRequest r)
    {
        var all = r.Context.Concat(r.Continuation).ToArray();
        var inp = all.Skip(Math.Max(0, all.Length - (MaxLength + 1))).SkipLast(1).ToArray();
        if (r.Continuation.Length > inp.Length)
            throw new LinearizeException($"a continuation of {r.Continuation.Length} tokens does not fit the model's {MaxLength}");
        using var sequence = _engine.CreateSequence();
        int n = r.Continuation.Length, v = _engine.VocabSize;
        var rows = Rows(n);
        _engine.Prefill(sequence, inp, inp.Length - n, rows);
        return Gather(rows, r.Continuation, v);
    }

    /// <summary>Scores one continuation from the state after its context: row 0 is <paramref name="first"/>, rows
    /// 1… come from prefilling <c>cont[..^1]</c> on a copy of <paramref name="context"/> (on the sequence itself when
    /// <paramref name="reuse"/>: its last use).</summary>
    private RequestScore ScoreContinuation(DecodeSequence context, float[] first, int[] cont, bool reuse)
    {
        int v = _engine.VocabSize;
        var rows = Rows(cont.Length);
        first.CopyTo(rows, 0);
        if (cont.Length > 1)
        {
            var sequence = reuse ? context : context.Clone();
            try
            {
                _engine.Prefill(sequence, cont.AsSpan(0, cont.Length - 1), 0, rows.AsSpan(v, (cont.Length - 1) * v));
            }
            finally
            {
                if (!reuse)
                    sequence.Dispose();
            }
        }

        return Gather(rows, cont, v);
    }

    private float[] Rows(int count)
    {
        long need = (long)count * _engine.VocabSize;
        if (_rows.Length < need)
            _rows = new float[need];
        return _rows;
    }

    /// <summary>Σ log_softmax(row j)[cont[j]] in float64, and whether each cont[j] is its row's argmax (the first
    /// maximum, as torch.argmax).</summary>
    internal static RequestScore Gather(float[] rows, int[] cont, int vocab)
    {
        double sum = 0;
        bool greedy = true;
        for (int j = 0; j < cont.Length; j++)
        {
            var row = new ReadOnlySpan<float>(rows, j * vocab, vocab);
            int argmax = TensorPrimitives.IndexOfMax(row);
            float max = row[argmax];
            // log_softmax in float32 as torch computes it: x − max − log Σ exp(x − max).
            float total = 0;
            foreach (float x in row)
                total += MathF.Exp(x - max);
            float logp = row[cont[j]] - max - MathF.Log(total);
            sum += logp;
            greedy &= argmax == cont[j];
        }

        return new RequestScore(sum, greedy);
    }
}
