using System.Diagnostics;
using Linearize.Caching;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// Scores log-likelihood requests exactly as lm-evaluation-harness's <c>HFLM._loglikelihood_tokens</c> (docs/EVALUATION.md §2),
/// but computes each shared context once: requests with the same context tokens form a group; a batch of groups runs
/// its (left-padded) contexts through the model with a cache, the cache's rows are repeated once per continuation
/// (<see cref="ModelCache.SelectRows"/> — the teacher's KV cache, or a linear model's recurrent state and window), and
/// every continuation then costs only its own tokens. Requests longer than <c>max_length + 1</c> are left-truncated as
/// lm-eval does and scored in one pass each. Log-softmax in float32; sums in float64.
/// </summary>
public sealed class LoglikelihoodScorer : ILoglikelihoodScorer
{
    private readonly LlamaForCausalLM _model;
    private readonly RequestEncoder _encoder;

    /// <param name="maxLength">The model's context (lm-eval: <c>max_position_embeddings</c>).</param>
    /// <param name="batchSize">Context groups per forward pass.</param>
    /// <param name="batchTokens">Upper bound on padded tokens per forward pass.</param>
    public LoglikelihoodScorer(LlamaForCausalLM model, TextTokenizer tokenizer, int maxLength, int batchSize = 16, int batchTokens = 8192)
    {
        if (maxLength < 2)
            throw new LinearizeException($"max length must be at least 2, got {maxLength}");
        if (batchSize < 1)
            throw new LinearizeException($"--batch-size must be at least 1, got {batchSize}");
        _model = model;
        _encoder = new RequestEncoder(tokenizer);
        MaxLength = maxLength;
        BatchSize = batchSize;
        BatchTokens = Math.Max(batchTokens, maxLength + 1);
    }

    public int MaxLength { get; }

    public int BatchSize { get; }

    public int BatchTokens { get; }

    /// <summary>Whether BOS starts every context (when the tokenizer adds it by default, as lm-eval's HF models do).</summary>
    public bool AddsBos => _encoder.AddsBos;

    /// <summary>lm-eval's <c>_encode_pair</c> (<see cref="RequestEncoder"/>).</summary>
    public EncodedRequest Encode(TaskRequest request) => _encoder.Encode(request);

    /// <summary>Python's <c>str.rstrip()</c>.</summary>
    internal static string RStrip(string s) => RequestEncoder.RStrip(s);

    /// <summary>Scores every request; <paramref name="progress"/> gets (requests done, tokens done).</summary>
    public RequestScore[] Score(IReadOnlyList<EncodedRequest> requests, Action<int, long>? progress = null, CancellationToken cancel = default)
    {
        var scores = new RequestScore[requests.Count];
        foreach (var (r, i) in requests.Select((r, i) => (r, i)))
            if (r.Continuation.Length == 0)
                throw new LinearizeException($"request {i}: empty continuation");
        using var noGrad = no_grad();
        bool wasTraining = _model.training;
        _model.eval();
        int done = 0;
        long tokens = 0;

        // Too long for the model: lm-eval's left truncation, one pass per request.
        foreach (int i in Enumerable.Range(0, requests.Count).Where(i => requests[i].Length > MaxLength + 1))
        {
            cancel.ThrowIfCancellationRequested();
            scores[i] = ScoreTruncated(requests[i]);
            progress?.Invoke(++done, tokens += Math.Min(requests[i].Length, MaxLength));
        }

        // Groups sharing a context.
        var allGroups = Enumerable.Range(0, requests.Count).Where(i => requests[i].Length <= MaxLength + 1)
            .GroupBy(i => string.Join(",", requests[i].Context))
            .Select(g => g.ToArray())
            .ToList();

        // Families of contexts that share a long token prefix (MMLU's description and shots): the prefix runs once.
        var families = Families(requests, allGroups);
        foreach (var (prefix, members) in families)
        {
            cancel.ThrowIfCancellationRequested();
            long cost = ScoreFamily(requests, prefix, members, scores);
            done += members.Sum(g => g.Length);
            progress?.Invoke(done, tokens += cost);
        }

        // The rest, longest first (as lm-eval's Collator sorts), batched with left padding.
        var shared = families.SelectMany(f => f.Members).ToHashSet();
        var groups = allGroups.Where(g => !shared.Contains(g))
            .OrderByDescending(g => requests[g[0]].Context.Length + g.Max(i => requests[i].Continuation.Length))
            .ToList();
        var batch = new List<int[]>();
        long batchCost = 0;
        foreach (var group in groups)
        {
            long cost = requests[group[0]].Context.Length + group.Sum(i => (long)requests[i].Continuation.Length);
            if (batch.Count > 0 && (batch.Count == BatchSize || batchCost + cost > BatchTokens))
            {
                cancel.ThrowIfCancellationRequested();
                ScoreBatch(requests, batch, scores);
                done += batch.Sum(g => g.Length);
                progress?.Invoke(done, tokens += batchCost);
                batch.Clear();
                batchCost = 0;
            }

            batch.Add(group);
            batchCost += cost;
        }

        if (batch.Count > 0)
        {
            ScoreBatch(requests, batch, scores);
            done += batch.Sum(g => g.Length);
            progress?.Invoke(done, tokens + batchCost);
        }

        if (wasTraining)
            _model.train();
        return scores;
    }

    /// <summary>Shortest token prefix worth sharing across contexts.</summary>
    public int MinSharedPrefix { get; init; } = 64;

    /// <summary>Contexts in token order; consecutive ones whose common prefix stays at least <see cref="MinSharedPrefix"/>
    /// tokens long form a family (at least two contexts). The prefix stops one token short of the shortest context, so
    /// every context has a remainder whose last logits predict its continuations.</summary>
    private List<(int[] Prefix, List<int[]> Members)> Families(IReadOnlyList<EncodedRequest> requests, List<int[]> groups)
    {
        var sorted = groups.OrderBy(g => requests[g[0]].Context, TokenSequenceComparer.Instance).ToList();
        return SharedPrefixes.Families(sorted.Select(g => requests[g[0]].Context).ToList(), MinSharedPrefix)
            .Where(f => f.PrefixLength > 0)
            .Select(f => (requests[sorted[f.Members[0]][0]].Context[..f.PrefixLength], f.Members.Select(m => sorted[m]).ToList()))
            .ToList();
    }

    /// <summary>Runs a family's prefix once, then each context's remainder — batched with others of the same length, so no
    /// padding ever sits between prefix and remainder — then their continuations. Returns the tokens computed.</summary>
    private long ScoreFamily(IReadOnlyList<EncodedRequest> requests, int[] prefix, List<int[]> members, RequestScore[] scores)
    {
        using var scope = NewDisposeScope();
        using var prefixCache = _model.CreateCache();
        _model.Model.forward(tensor(prefix.Select(t => (long)t).ToArray()).view(1, -1), prefixCache, null);
        long cost = prefix.Length;
        foreach (var bucket in members.GroupBy(g => requests[g[0]].Context.Length))
        {
            foreach (var chunk in bucket.Chunk(BatchSize))
            {
                using var inner = NewDisposeScope();
                int n = chunk.Length, lr = bucket.Key - prefix.Length;
                var ids = chunk.SelectMany(g => requests[g[0]].Context.Skip(prefix.Length).Select(t => (long)t)).ToArray();
                using var cache = prefixCache.SelectRows(zeros(n, dtype: ScalarType.Int64));
                var hidden = _model.Model.forward(tensor(ids).view(n, lr), cache, null);
                var first = _model.Head(hidden.narrow(1, lr - 1, 1)).squeeze(1).log_softmax(-1);
                ScoreContinuations(requests, chunk.ToList(), cache, null, first, scores);
                cost += (long)n * lr + chunk.Sum(g => g.Sum(i => (long)requests[i].Continuation.Length));
            }
        }

        return cost;
    }

    /// <summary>One request in one pass: <c>inp = (ctx + cont)[-(max_length+1):][:-1]</c>, the last |cont| rows scored.</summary>
    public RequestScore ScoreTruncated(EncodedRequest r)
    {
        using var scope = NewDisposeScope();
        var all = r.Context.Concat(r.Continuation).ToArray();
        var inp = all.Skip(Math.Max(0, all.Length - (MaxLength + 1))).SkipLast(1).Select(t => (long)t).ToArray();
        if (r.Continuation.Length > inp.Length)
            throw new LinearizeException($"a continuation of {r.Continuation.Length} tokens does not fit the model's {MaxLength}");
        var logp = _model.Forward(tensor(inp).view(1, -1))[0].log_softmax(-1);          // [T, V]
        var rows = logp.narrow(0, inp.Length - r.Continuation.Length, r.Continuation.Length);
        return Gather(rows, r.Continuation);
    }

    private void ScoreBatch(IReadOnlyList<EncodedRequest> requests, List<int[]> groups, RequestScore[] scores)
    {
        using var scope = NewDisposeScope();
        int g = groups.Count, lc = groups.Max(x => requests[x[0]].Context.Length);
        var ctxIds = new long[g * lc];
        var ctxMask = new long[g * lc];
        for (int b = 0; b < g; b++)
        {
            var ctx = requests[groups[b][0]].Context;
            int pad = lc - ctx.Length;
            for (int j = 0; j < ctx.Length; j++)
            {
                ctxIds[b * lc + pad + j] = ctx[j];
                ctxMask[b * lc + pad + j] = 1;
            }
        }

        using var cache = _model.CreateCache();
        var mask = tensor(ctxMask).view(g, lc);
        bool padded = ctxMask.Any(m => m == 0);
        var hidden = _model.Model.forward(tensor(ctxIds).view(g, lc), cache, padded ? mask : null);
        var first = _model.Head(hidden.narrow(1, lc - 1, 1)).squeeze(1).log_softmax(-1); // [G, V]: predicts cont[0]
        ScoreContinuations(requests, groups, cache, padded ? mask : null, first, scores);
    }

    /// <summary>Given the cache after each group's context (row b = group b; <paramref name="contextMask"/> its padding, if
    /// any) and the log-probabilities after its last token, scores every continuation of every group: the cache's rows
    /// are selected once per continuation, and the continuations run together, right-padded.</summary>
    private void ScoreContinuations(IReadOnlyList<EncodedRequest> requests, IReadOnlyList<int[]> groups, ModelCache cache, Tensor? contextMask,
        Tensor first, RequestScore[] scores)
    {
        bool padded = contextMask is not null;
        var mask = contextMask;
        var order = groups.SelectMany((x, b) => x.Select(i => (Request: i, Row: b))).ToList();
        int lm = order.Max(o => requests[o.Request].Continuation.Length) - 1;
        Tensor? rest = null;
        if (lm > 0)
        {
            int n = order.Count;
            var ids = new long[n * lm];
            for (int r = 0; r < n; r++)
            {
                var cont = requests[order[r].Request].Continuation;
                for (int j = 0; j < cont.Length - 1; j++)
                    ids[r * lm + j] = cont[j]; // right padding after the real tokens never reaches them (causal)
            }

            var rows = tensor(order.Select(o => (long)o.Row).ToArray());
            using var shared = cache.SelectRows(rows);
            var contMask = padded ? cat(new[] { mask!.index_select(0, rows), ones(n, lm, dtype: ScalarType.Int64) }, 1) : null;
            rest = _model.Forward(tensor(ids).view(n, lm), shared, contMask).log_softmax(-1); // [R, Lm, V]
        }

        for (int r = 0; r < order.Count; r++)
        {
            var cont = requests[order[r].Request].Continuation;
            var head = first[order[r].Row].unsqueeze(0);
            var rowsLogp = cont.Length == 1 ? head : cat(new[] { head, rest![r].narrow(0, 0, cont.Length - 1) }, 0);
            scores[order[r].Request] = Gather(rowsLogp, cont);
        }
    }

    /// <summary>Σ logp[j, cont[j]] (float64) and whether each cont[j] is the row's argmax.</summary>
    private static RequestScore Gather(Tensor logp, int[] cont)
    {
        var target = tensor(cont.Select(t => (long)t).ToArray());
        var picked = logp.gather(1, target.unsqueeze(1)).squeeze(1).to(ScalarType.Float64);
        bool greedy = logp.argmax(1).eq(target).all().item<bool>();
        return new RequestScore(picked.sum().item<double>(), greedy);
    }
}
