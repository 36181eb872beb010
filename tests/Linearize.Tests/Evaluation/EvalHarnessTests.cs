using System.Text.Json;
using Linearize.Evaluation.Tasks;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Evaluation;

/// <summary>lm-eval's rules (docs/EVALUATION.md) and the fast scorer: the context/continuation split, left
/// truncation, acc_norm's length rule, MMLU's prompt, and prefix sharing and batching equal to one pass per request.</summary>
[Collection("Torch")]
public sealed class EvalHarnessTests
{
    /// <summary>A tiny teacher, or its conversion by <paramref name="kind"/> (window 4).</summary>
    internal static LlamaForCausalLM Model(string kind)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        return kind switch
        {
            "teacher" => TinyModels.Create("gqa-untied"),
            "lolcats-tk" => LolcatsConversionTests.Converted(teacher, LolcatsConversionTests.Lin("lolcats-tk", window: 4)),
            _ => Converter.Convert(teacher, LigerConversionTests.Lin(kind, window: 4)),
        };
    }

    [Fact]
    public void TrailingWhitespaceOfTheContextMovesToTheContinuation()
    {
        using var model = Model("teacher");
        var scorer = new LoglikelihoodScorer(model, new CharTokenizer(67), 256);
        var tok = new CharTokenizer(67);
        var r = scorer.Encode(new TaskRequest("Question: x\nAnswer: \n", "yes"));
        Assert.Equal(tok.Encode("Question: x\nAnswer:", true), r.Context);
        Assert.Equal(tok.Encode(" \nyes", false), r.Continuation);
        Assert.Equal("a", LoglikelihoodScorer.RStrip("a\u001c \t")); // U+001C is whitespace to Python's str.isspace
    }

    [Fact]
    public void RequestsLongerThanTheModelAreLeftTruncatedAsLmEvalDoes()
    {
        using var model = Model("teacher");
        using var noGrad = no_grad();
        var scorer = new LoglikelihoodScorer(model, new CharTokenizer(67), maxLength: 16);
        var request = new EncodedRequest(Enumerable.Range(0, 25).Select(i => 3 + i % 60).ToArray(), new[] { 7, 9, 11 });
        var score = scorer.Score(new[] { request })[0];
        // inp = (ctx + cont)[-(16+1):][:-1]: the last 17 tokens without the final one; BOS is not re-added.
        var all = request.Context.Concat(request.Continuation).ToArray();
        var inp = all.Skip(all.Length - 17).Take(16).Select(t => (long)t).ToArray();
        var logp = model.Forward(tensor(inp).view(1, -1))[0].log_softmax(-1);
        double expected = Enumerable.Range(0, 3).Sum(j => (double)logp[13 + j, request.Continuation[j]].item<float>());
        Assert.Equal(expected, score.LogLikelihood, 4);
    }

    [Fact]
    public void AccNormDividesByCodePointsAndTiesGoToTheFirstChoice()
    {
        var task = new PiqaTask();
        // "😀😀" is 2 code points (4 UTF-16 units): ll −3 / 2 = −1.5 beats "abcd" at −5 / 4 = −1.25? No: −1.25 > −1.5.
        var doc = new TaskDocument(0, new[] { new TaskRequest("c", " 😀😀"), new TaskRequest("c", " abcd") }, 0, new[] { "😀😀", "abcd" });
        var m = TaskEvaluator.DocumentMetrics(task, doc, new[] { new RequestScore(-3, false), new RequestScore(-5, false) });
        Assert.Equal(1, m["acc"]);      // −3 > −5
        Assert.Equal(0, m["acc_norm"]); // −3/2 = −1.5 < −5/4 = −1.25 (UTF-16 length would give −0.75 and pick choice 0)
        Assert.Equal(2, TaskEvaluator.CodePoints("😀😀"));
        Assert.Equal(0, TaskEvaluator.ArgMax(new[] { 1.0, 1.0, 0.5 }));
        var tie = TaskEvaluator.DocumentMetrics(task, doc with { Gold = 1 }, new[] { new RequestScore(-4, false), new RequestScore(-4, false) });
        Assert.Equal(0, tie["acc"]); // a tie goes to the first index, which is not gold
    }

    [Fact]
    public void MeanStderrAndPooledStderrFollowLmEval()
    {
        var m = TaskEvaluator.Mean("acc", new double[] { 1, 0, 1, 1 });
        Assert.Equal(0.75, m.Value, 12);
        Assert.Equal(Math.Sqrt(0.25 / 4), m.Stderr!.Value, 12); // sample variance 0.25 (ddof 1) / n
    }

    public static IEnumerable<object[]> Kinds() => new[] { "teacher", "liger-gla", "liger-gsa", "swa", "lolcats-tk" }.Select(k => new object[] { k });

    private static List<EncodedRequest> Requests()
    {
        var rng = new Random(9);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, 67)).ToArray();
        var requests = new List<EncodedRequest>();
        for (int doc = 0; doc < 7; doc++)
        {
            var ctx = new[] { 1 }.Concat(Tokens(rng.Next(3, 40))).ToArray();
            for (int choice = 0; choice < 2 + doc % 3; choice++)
                requests.Add(new EncodedRequest(ctx, Tokens(rng.Next(1, 9))));
        }

        return requests;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SharedContextsAndBatchesEqualOnePassPerRequest(string kind)
    {
        using var model = Model(kind);
        var requests = Requests();
        var batched = new LoglikelihoodScorer(model, new CharTokenizer(67), 256, batchSize: 16).Score(requests);
        var single = new LoglikelihoodScorer(model, new CharTokenizer(67), 256, batchSize: 1).Score(requests);
        var onePass = new LoglikelihoodScorer(model, new CharTokenizer(67), 256);
        double worst = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var reference = onePass.ScoreTruncated(requests[i]); // ctx + cont in one forward pass, nothing shared
            worst = Math.Max(worst, Math.Abs(reference.LogLikelihood - batched[i].LogLikelihood));
            Assert.Equal(reference.IsGreedy, batched[i].IsGreedy);
            Assert.True(Math.Abs(batched[i].LogLikelihood - single[i].LogLikelihood) < 1e-4, $"batch of 16 vs 1: request {i}");
        }

        Assert.True(worst < 1e-4, $"{kind}: shared-prefix scores differ from one pass by {worst:E2}");
        Assert.True(requests.Select((r, i) => batched[i].LogLikelihood).Distinct().Count() > 10, "scores must vary");
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ContextsSharingAPrefixRunItOnceAndEqualOnePassPerRequest(string kind)
    {
        // MMLU's shape: many contexts = one long shared prefix (description + shots) + a question; some remainders of
        // equal length (batched together), some not; plus unrelated contexts.
        using var model = Model(kind);
        var rng = new Random(4);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, 67)).ToArray();
        var prefix = new[] { 1 }.Concat(Tokens(23)).ToArray();
        var requests = new List<EncodedRequest>();
        foreach (int remainder in new[] { 5, 9, 5, 1, 12, 5 })
        {
            var ctx = prefix.Concat(Tokens(remainder)).ToArray();
            foreach (var letter in new[] { 40, 41, 42, 43 })
                requests.Add(new EncodedRequest(ctx, new[] { letter }));
        }

        requests.Add(new EncodedRequest(new[] { 1 }.Concat(Tokens(6)).ToArray(), Tokens(3)));
        var scorer = new LoglikelihoodScorer(model, new CharTokenizer(67), 256, batchSize: 4) { MinSharedPrefix = 8 };
        var shared = scorer.Score(requests);
        for (int i = 0; i < requests.Count; i++)
        {
            var reference = scorer.ScoreTruncated(requests[i]);
            Assert.True(Math.Abs(reference.LogLikelihood - shared[i].LogLikelihood) < 1e-4,
                $"{kind}: request {i}: {reference.LogLikelihood} vs {shared[i].LogLikelihood}");
            Assert.Equal(reference.IsGreedy, shared[i].IsGreedy);
        }
    }

    [SharedFact("data/mmlu/dev/anatomy_dev.csv", "data/mmlu/test/anatomy_test.csv")]
    public void MmluPromptIsRenderedCharacterForCharacter()
    {
        var docs = new MmluTask().Load(SharedData.PathOf("data"), numFewshot: 2, limit: 1);
        var anatomy = docs.Single(d => d.Subject == "anatomy");
        const string expected =
            "The following are multiple choice questions (with answers) about anatomy.\n\n" +
            "What is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\nB. The first and second pharyngeal arches\n" +
            "C. The second pharyngeal arch\nD. The second and third pharyngeal arches\nAnswer: D\n\n" +
            "Which of these branches of the trigeminal nerve contain somatic motor processes?\nA. The supraorbital nerve\n" +
            "B. The infraorbital nerve\nC. The mental nerve\nD. None of the above\nAnswer: D\n\n" +
            "A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\n" +
            "A. paralysis of the facial muscles.\nB. paralysis of the facial muscles and loss of taste.\n" +
            "C. paralysis of the facial muscles, loss of taste and lacrimation.\n" +
            "D. paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation.\nAnswer:";
        Assert.Equal(expected, anatomy.Requests[0].Context);
        Assert.Equal(new[] { " A", " B", " C", " D" }, anatomy.Requests.Select(r => r.Continuation).ToArray());
        Assert.Equal(0, anatomy.Gold);
        Assert.Equal(57, docs.Count);
    }

    [SharedFact("data/arc/arc_easy.llmfoundry.jsonl", "data/winogrande/dev.jsonl", "data/lambada/lambada_test.jsonl")]
    public void SharedFilesMapOntoLmEvalDocuments()
    {
        var arc = new ArcTask(challenge: false);
        var docs = arc.Load(SharedData.PathOf("data"), 0, null);
        Assert.Equal(2376, docs.Count);
        Assert.Equal(7, arc.Depadded); // docs/EVALUATION.md §3: easy idx 93, 328, 560, 648, 1447, 1677, 1992
        Assert.Equal(3, docs[93].Requests.Count);
        Assert.StartsWith("Question: ", docs[0].Requests[0].Context);
        Assert.EndsWith("\nAnswer:", docs[0].Requests[0].Context);

        var wino = new WinoGrandeTask().Load(SharedData.PathOf("data"), 0, 1)[0];
        Assert.Equal(wino.Requests[0].Continuation, wino.Requests[1].Continuation); // partial scoring: one target, two contexts
        Assert.StartsWith(" ", wino.Requests[0].Continuation);

        var lambada = new LambadaTask().Load(SharedData.PathOf("data"), 0, 3);
        Assert.All(lambada, d => Assert.DoesNotContain(" ", d.Requests[0].Continuation[1..]));
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/piqa/valid.jsonl", "data/mmlu/dev/anatomy_dev.csv")]
    public void EvalTasksPrintsLmEvalsResultsShape()
    {
        using var dir = new TempDir();
        var (exit, output, err) = CliHarness.Run("eval", "tasks", "--model", SharedData.Stories260KDir, "--tasks", "piqa,mmlu,lambada_openai",
            "--num-fewshot", "0", "--limit", "2", "--json", "--log-samples", dir.Path);
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var results = doc.RootElement.GetProperty("results");
        Assert.InRange(results.GetProperty("piqa").GetProperty("acc,none").GetDouble(), 0, 1);
        Assert.True(results.GetProperty("piqa").TryGetProperty("acc_norm_stderr,none", out _));
        Assert.True(results.GetProperty("lambada_openai").GetProperty("perplexity,none").GetDouble() > 1);
        Assert.True(doc.RootElement.GetProperty("groups").TryGetProperty("mmlu_stem", out _));
        Assert.Equal("  - anatomy", results.GetProperty("mmlu_anatomy").GetProperty("alias").GetString());
        Assert.True(doc.RootElement.GetProperty("config").GetProperty("add_bos_token").GetBoolean());
        Assert.Equal(114, doc.RootElement.GetProperty("n-samples").GetProperty("mmlu").GetProperty("effective").GetInt32());
        var lines = File.ReadAllLines(Directory.GetFiles(dir.Path, "samples_piqa_*.jsonl").Single());
        Assert.Equal(2, lines.Length);
        Assert.Equal(2, JsonDocument.Parse(lines[0]).RootElement.GetProperty("resps").GetArrayLength());

        var (missingExit, _, missingErr) = CliHarness.Run("eval", "tasks", "--model", SharedData.Stories260KDir, "--tasks", "piqa", "--data-dir", dir.Path);
        Assert.Equal(1, missingExit);
        Assert.Contains("piqa/valid.jsonl: not found", missingErr);
    }
}
