using System.Diagnostics;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;

namespace Linearize.Evaluation.Tasks;

/// <summary>
/// Runs lm-eval tasks on one model: builds each document's requests, encodes them (<see cref="ILoglikelihoodScorer.Encode"/>),
/// scores them all in one sorted, batched, prefix-sharing pass, and turns the scores into lm-eval's metrics
/// (docs/EVALUATION.md §1: acc, acc_norm by character length, LAMBADA's per-document perplexity, MMLU's size-weighted groups).
/// </summary>
public sealed class TaskEvaluator
{
    private readonly ILoglikelihoodScorer _scorer;

    /// <summary>Scores with the TorchSharp model (<see cref="LoglikelihoodScorer"/>).</summary>
    public TaskEvaluator(LlamaForCausalLM model, TextTokenizer tokenizer, int? maxLength = null, int batchSize = 16)
        : this(new LoglikelihoodScorer(model, tokenizer, maxLength ?? model.Config.MaxPositionEmbeddings, batchSize))
    {
    }

    public TaskEvaluator(ILoglikelihoodScorer scorer) => _scorer = scorer;

    public ILoglikelihoodScorer Scorer => _scorer;

    /// <summary>Requests done of the task's total, the task's token rate and time so far, and the whole run's time.</summary>
    public sealed record Progress(string Task, int Done, int Total, double TokensPerSecond, TimeSpan Elapsed, TimeSpan TaskElapsed);

    public sealed record Result(IReadOnlyList<TaskScore> Tasks, long Requests, long Tokens, double Seconds)
    {
        public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
    }

    public Result Run(IReadOnlyList<EvalTask> tasks, string dataDirectory, int? numFewshot, int? limit, Action<Progress>? progress = null,
        CancellationToken cancel = default)
    {
        var watch = Stopwatch.StartNew();
        var scores = new List<TaskScore>();
        long requests = 0, tokens = 0;
        foreach (var task in tasks)
        {
            var docs = task.Load(dataDirectory, numFewshot ?? task.DefaultFewshot, limit);
            var encoded = docs.Select(d => d.Requests.Select(_scorer.Encode).ToArray()).ToArray();
            // A continuation longer than the model's context cannot be scored (lm-eval asserts); skip its document.
            var kept = Enumerable.Range(0, docs.Count).Where(i => encoded[i].All(r => r.Continuation.Length <= _scorer.MaxLength)).ToList();
            var flat = kept.SelectMany(i => encoded[i]).ToList();
            long taskTokens = 0;
            var taskWatch = Stopwatch.StartNew();
            var results = _scorer.Score(flat, (done, t) =>
            {
                taskTokens = t;
                progress?.Invoke(new Progress(task.Name, done, flat.Count, t / Math.Max(taskWatch.Elapsed.TotalSeconds, 1e-9), watch.Elapsed, taskWatch.Elapsed));
            }, cancel);
            requests += flat.Count;
            tokens += taskTokens;
            var samples = new List<SampleLog>();
            int k = 0;
            foreach (int i in kept)
            {
                var doc = docs[i];
                var docScores = results.Skip(k).Take(doc.Requests.Count).ToArray();
                k += doc.Requests.Count;
                samples.Add(new SampleLog(doc.Index, doc.Subject, doc.Gold, doc.Requests, docScores, DocumentMetrics(task, doc, docScores)));
            }

            scores.Add(Aggregate(task, samples, docs.Count - kept.Count));
        }

        return new Result(scores, requests, tokens, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Per-document metrics (docs/EVALUATION.md §1): acc = argmax(lls) == gold; acc_norm = argmax(lls / len(choice)) == gold,
    /// len in code points; ties go to the first index (np.argmax). LAMBADA: ll and is_greedy.</summary>
    public static Dictionary<string, double> DocumentMetrics(EvalTask task, TaskDocument doc, IReadOnlyList<RequestScore> scores)
    {
        if (task.Kind == TaskOutputKind.Loglikelihood)
            return new Dictionary<string, double> { ["ll"] = scores[0].LogLikelihood, ["acc"] = scores[0].IsGreedy ? 1 : 0 };
        var lls = scores.Select(s => s.LogLikelihood).ToArray();
        var metrics = new Dictionary<string, double> { ["acc"] = ArgMax(lls) == doc.Gold ? 1 : 0 };
        if (task.ReportsAccNorm)
        {
            var normalized = lls.Select((ll, i) => ll / CodePoints(doc.Choices[i])).ToArray();
            metrics["acc_norm"] = ArgMax(normalized) == doc.Gold ? 1 : 0;
        }

        return metrics;
    }

    /// <summary>Python's <c>len(str)</c>: code points, not UTF-16 units.</summary>
    public static int CodePoints(string s) => s.EnumerateRunes().Count();

    /// <summary>The first index of the maximum (np.argmax).</summary>
    public static int ArgMax(IReadOnlyList<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Count; i++)
            if (values[i] > values[best])
                best = i;
        return best;
    }

    private static TaskScore Aggregate(EvalTask task, List<SampleLog> samples, int skipped)
    {
        if (task is MmluTask)
            return AggregateMmlu(task, samples, skipped);
        var metrics = new List<MetricValue>();
        if (task.Kind == TaskOutputKind.Loglikelihood)
        {
            double meanLl = samples.Count == 0 ? double.NaN : samples.Average(s => s.Metrics["ll"]);
            metrics.Add(new MetricValue("perplexity", Math.Exp(-meanLl), null));
            metrics.Add(Mean("acc", samples.Select(s => s.Metrics["acc"]).ToList()));
        }
        else
        {
            metrics.Add(Mean("acc", samples.Select(s => s.Metrics["acc"]).ToList()));
            if (task.ReportsAccNorm)
                metrics.Add(Mean("acc_norm", samples.Select(s => s.Metrics["acc_norm"]).ToList()));
        }

        return new TaskScore(task.Name, samples.Count, metrics, skipped, task.Note, Array.Empty<TaskScore>(), samples);
    }

    /// <summary>Subjects (<c>mmlu_{subject}</c>), the four categories and <c>mmlu</c>: accuracy weighted by size (a micro
    /// average), stderr pooled as lm-eval's <c>pooled_sample_stderr</c>.</summary>
    private static TaskScore AggregateMmlu(EvalTask task, List<SampleLog> samples, int skipped)
    {
        var subjects = samples.GroupBy(s => s.Subject!).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new TaskScore($"mmlu_{g.Key}", g.Count(), new[] { Mean("acc", g.Select(s => s.Metrics["acc"]).ToList()) }, 0, null,
                Array.Empty<TaskScore>(), g.ToList()))
            .ToList();
        TaskScore Group(string name, IReadOnlyList<TaskScore> members, IReadOnlyList<TaskScore> subtasks)
        {
            long n = members.Sum(m => (long)m.Documents);
            double acc = members.Sum(m => m.Metric("acc")!.Value * m.Documents) / Math.Max(1, n);
            return new TaskScore(name, (int)n, new[] { new MetricValue("acc", acc, PooledStderr(members)) }, 0, null, subtasks, Array.Empty<SampleLog>());
        }

        var categories = subjects.GroupBy(s => MmluTask.Categories[s.Task["mmlu_".Length..]]).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => Group($"mmlu_{g.Key}", g.ToList(), g.ToList())).ToList();
        var total = Group("mmlu", subjects, categories);
        return total with { Skipped = skipped, Samples = samples };
    }

    /// <summary>lm-eval <c>pooled_sample_stderr</c>: √(Σ(n_i − 1)·se_i²·n_i / (Σn_i − k) / Σn_i).</summary>
    public static double? PooledStderr(IReadOnlyList<TaskScore> members)
    {
        long n = members.Sum(m => (long)m.Documents);
        if (n - members.Count <= 0 || members.Any(m => m.Metric("acc")!.Stderr is null))
            return null;
        double pooled = members.Sum(m => (m.Documents - 1) * Math.Pow(m.Metric("acc")!.Stderr!.Value, 2) * m.Documents) / (n - members.Count);
        return Math.Sqrt(pooled / n);
    }

    /// <summary>lm-eval <c>mean</c> with <c>mean_stderr</c> = sample standard deviation (ddof 1) / √n.</summary>
    public static MetricValue Mean(string name, IReadOnlyList<double> values)
    {
        int n = values.Count;
        if (n == 0)
            return new MetricValue(name, double.NaN, null);
        double mean = values.Average();
        double? stderr = n < 2 ? null : Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (n - 1) / n);
        return new MetricValue(name, mean, stderr);
    }
}
