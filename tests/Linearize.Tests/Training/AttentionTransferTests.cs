using System.Diagnostics;
using Linearize.Checkpoints;
using Linearize.Data;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using Linearize.Training;
using Linearize.Training.Distillation;
using Linearize.Workflows;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Training;

/// <summary>LoLCATs stage 1: only the feature maps and window factors change, the transfer loss falls, runs resume
/// exactly, and a block trained from its saved inputs in another process equals the same block trained in-process.</summary>
[Collection("Torch")]
public sealed class AttentionTransferTests
{
    private static readonly TrainingOptions Options = AttentionTransferRun.Recipe with
    {
        SequenceLength = 40, BatchSize = 2, GradientAccumulation = 2, Epochs = 2, EvalEvery = 2, Seed = 3,
    };

    private static (List<TrainingExample> Train, List<TrainingExample> Val) Data(int vocab)
    {
        var rng = new Random(5);
        var examples = Enumerable.Range(0, 60).Select(_ =>
        {
            var ids = Enumerable.Range(0, rng.Next(10, 40)).Select(_ => rng.Next(3, vocab)).ToArray();
            return new TrainingExample(ids, ids);
        }).ToList();
        var packed = SequencePacker.Pack(examples, 40);
        return (packed.Skip(4).ToList(), packed.Take(4).ToList());
    }

    private static LlamaForCausalLM Student(string method = "lolcats-sw")
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var model = Converter.Convert(teacher, LolcatsConversionTests.Lin(method, window: 8));
        foreach (var p in model.parameters())
            p.requires_grad = false;
        foreach (var layer in model.Model.Layers)
            if (layer.SelfAttention is LolcatsAttention a)
                foreach (var p in a.TransferParameters)
                    p.requires_grad = true;
        return model;
    }

    private static Dictionary<string, Tensor> Snapshot(LlamaForCausalLM model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

    [Theory]
    [InlineData("lolcats-sw")]
    [InlineData("lolcats-tk")]
    public void OnlyFeatureMapsAndWindowFactorsTrainAndTheTransferLossFalls(string method)
    {
        using var dir = new TempDir();
        using var model = Student(method);
        var (train, val) = Data(model.Config.VocabSize);
        var before = Snapshot(model);
        var trainer = new Trainer(model, train, val, Options, dir.Path, new AttentionTransferObjective());
        double initial = trainer.Evaluate();
        var result = trainer.Run(false, CancellationToken.None);
        Assert.True(result.Completed);
        foreach (var (name, t) in model.state_dict())
        {
            if (Converter.IsAddedParameter(name))
                Assert.True((before[name] - t).abs().max().item<float>() > 0, $"{name} did not train");
            else
                TensorAssert.BitEqual($"frozen {name}", before[name], t);
        }

        Assert.True(result.FinalEvalLoss < 0.95 * initial, $"transfer loss {initial:F4} → {result.FinalEvalLoss:F4}");
        // The logits moved toward the teacher's.
        using var teacher = TinyModels.Create("gqa-untied");
        using var untrained = Converter.Convert(teacher, LolcatsConversionTests.Lin(method, window: 8));
        using var noGrad = no_grad();
        var ids = tensor(val[0].InputIds.Select(i => (long)i).ToArray()).view(1, -1);
        var target = teacher.Forward(ids);
        double errBefore = (untrained.Forward(ids) - target).Squared().mean().item<float>();
        double errAfter = (model.Forward(ids) - target).Squared().mean().item<float>();

        Assert.True(errAfter < errBefore, $"logit MSE to the teacher {errBefore:E3} → {errAfter:E3}");
    }

    [Theory]
    [InlineData("lolcats-sw")]
    [InlineData("lolcats-tk")]
    public void CrossEntropyOnAttentionRowsTrains(string method)
    {
        // --xent-factor: the cross-entropy between the teacher's attention rows and the hybrid's (its quadratic form) is
        // finite, positive, and falls when it is the only loss.
        using var dir = new TempDir();
        using var model = Student(method);
        var (train, val) = Data(model.Config.VocabSize);
        var objective = new AttentionTransferObjective(mseFactor: 0, xentFactor: 1);
        var trainer = new Trainer(model, train, val, Options with { MaxSteps = 3 }, dir.Path, objective);
        double before = trainer.Evaluate();
        Assert.True(double.IsFinite(before) && before > 0);
        var result = trainer.Run(false, CancellationToken.None);
        Assert.True(result.FinalEvalLoss < before, $"attention cross-entropy {before:F4} → {result.FinalEvalLoss:F4}");
    }

    [Fact]
    public void InterruptedTransferResumesToTheSameWeights()
    {
        Dictionary<string, Tensor> reference;
        using (var dir = new TempDir())
        using (var model = Student())
        {
            var (train, val) = Data(model.Config.VocabSize);
            new Trainer(model, train, val, Options, dir.Path, new AttentionTransferObjective()).Run(false, CancellationToken.None);
            reference = Snapshot(model);
        }

        using var runDir = new TempDir();
        using (var first = Student())
        {
            var (train, val) = Data(first.Config.VocabSize);
            using var cts = new CancellationTokenSource();
            var partial = new Trainer(first, train, val, Options, runDir.Path, new AttentionTransferObjective())
                .Run(false, cts.Token, m => { if (m.Step == 3) cts.Cancel(); });
            Assert.False(partial.Completed);
        }

        using var second = Student();
        var (t2, v2) = Data(second.Config.VocabSize);
        Assert.True(new Trainer(second, t2, v2, Options, runDir.Path, new AttentionTransferObjective()).Run(true, CancellationToken.None).Completed);
        foreach (var (name, t) in second.state_dict())
            TensorAssert.BitEqual($"resumed {name}", reference[name], t);
    }

    /// <summary>A Liger layer with added projections (the learned gate's <c>g_proj</c>, the delta rule's <c>b_proj</c>)
    /// transfers too: only those change, and the distance to the teacher's attention falls.</summary>
    [Theory]
    [InlineData("liger-gla+learned")]
    [InlineData("liger-gdn+learned")]
    [InlineData("liger-deltanet")]
    public void LigerAddedProjectionsTrainAndTheTransferLossFalls(string variant)
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, LigerGateAndNormTests.Lin(variant));
        foreach (var p in model.parameters())
            p.requires_grad = false;
        foreach (var layer in AttentionTransferObjective.TransferLayers(model))
            foreach (var p in layer.TransferParameters)
                p.requires_grad = true;
        var (train, val) = Data(model.Config.VocabSize);
        var before = Snapshot(model);
        var trainer = new Trainer(model, train, val, Options with { LearningRate = 3e-2 }, dir.Path, new AttentionTransferObjective());
        double initial = trainer.Evaluate();
        var result = trainer.Run(false, CancellationToken.None);
        Assert.True(result.Completed);
        foreach (var (name, t) in model.state_dict())
        {
            if (Converter.IsAddedParameter(name))
                Assert.True((before[name] - t).abs().max().item<float>() > 0, $"{name} did not train");
            else
                TensorAssert.BitEqual($"frozen {name}", before[name], t);
        }

        Assert.True(result.FinalEvalLoss < initial, $"transfer loss {initial:F4} → {result.FinalEvalLoss:F4}");
    }

    [Fact]
    public void DistillRefusesAModelWithoutLolcatsLayers()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = Converter.Convert(teacher, LigerConversionTests.Lin("liger-gla"));
        var (train, val) = Data(model.Config.VocabSize);
        var e = Assert.Throws<LinearizeException>(() =>
            new Trainer(model, train, val, Options with { }, dir.Path, new AttentionTransferObjective()).Evaluate());
        Assert.Contains("convert the teacher with --method lolcats-sw", e.Message);
    }

    /// <summary>
    /// stories260K (5 layers) in blocks of 2: block 1 (layers 2–3) trained by a separate <c>linearize distill --block 1</c>
    /// process from the saved boundary file gives bit-identical weights to the same block trained in this process from
    /// the same file, and to training those two layers inside the whole model (the residual stream computed live).
    /// </summary>
    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void BlockTrainedInItsOwnProcessEqualsTheSameBlockInProcess()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), runA = dir.File("a"), runB = dir.File("b");
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "lolcats-sw", "--out", converted).Exit);
        string[] common = { "distill", "--model", converted, "--data", SharedData.TinyStoriesVal, "--skip-docs", "1000", "--text-split", "stream",
            "--seq-len", "64", "--grad-accum", "2", "--max-steps", "4", "--eval-every", "2", "--block-size", "2" };
        var (exit, _, err) = CliHarness.Run(common.Concat(new[] { "--out", runA, "--prepare" }).ToArray());
        Assert.True(exit == 0, err);
        Assert.Equal(3, Directory.GetFiles(Path.Combine(runA, "blocks", "inputs")).Length);
        CopyDirectory(runA, runB);

        // In this process.
        (exit, _, err) = CliHarness.Run(common.Concat(new[] { "--out", runA, "--block", "1" }).ToArray());
        Assert.True(exit == 0, err);

        // In a child process that shares only the directory.
        string cli = typeof(Linearize.Cli.Program).Assembly.Location;
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { cli }.Concat(common).Concat(new[] { "--out", runB, "--block", "1" }))
            info.ArgumentList.Add(a);
        using (var child = Process.Start(info)!)
        {
            string childErr = child.StandardError.ReadToEnd();
            child.WaitForExit();
            Assert.True(child.ExitCode == 0, childErr);
        }

        var a1 = ReadAll(Path.Combine(runA, "blocks", "block-1", AttentionTransferRun.BlockWeightsName));
        var b1 = ReadAll(Path.Combine(runB, "blocks", "block-1", AttentionTransferRun.BlockWeightsName));
        Assert.Equal(a1.Keys.Order(), b1.Keys.Order());
        Assert.All(a1.Keys, k => Assert.StartsWith("model.layers.", k));
        Assert.Equal(new[] { 2, 3 }, a1.Keys.Select(k => int.Parse(k.Split('.')[2])).Distinct().Order().ToArray());
        foreach (var k in a1.Keys)
            TensorAssert.BitEqual($"separate process {k}", a1[k], b1[k]);

        // The same two layers trained inside the whole model, the residual stream computed live.
        var (model, tokenizer, _) = ModelLoader.LoadWithTokenizer(converted);
        using var _m = model;
        var data = TrainingData.Prepare(SharedData.TinyStoriesVal, null, tokenizer,
            new TrainingData.Options { SkipDocuments = 1000, TextSplit = TextDataset.Split.Stream, SequenceLength = 64 });
        foreach (var p in model.parameters())
            p.requires_grad = false;
        foreach (int l in new[] { 2, 3 })
            foreach (var p in ((LolcatsAttention)model.Model.Layers[l].SelfAttention).TransferParameters)
                p.requires_grad = true;
        var options = AttentionTransferRun.Recipe with { SequenceLength = 64, GradientAccumulation = 2, MaxSteps = 4, EvalEvery = 2 };
        var result = new Trainer(model, data.Train, data.Validation, options, dir.File("inline"),
            new AttentionTransferObjective(layers: new HashSet<int> { 2, 3 })).Run(false, CancellationToken.None);
        LinearizationPipeline.RestoreTrainable(model, result.BestCheckpoint!);
        var live = model.state_dict();
        foreach (var k in a1.Keys)
            TensorAssert.Close($"in-model {k}", live[k], a1[k], 1e-6);

        // Gathering needs every block.
        (exit, _, err) = CliHarness.Run(common.Concat(new[] { "--out", runA, "--gather" }).ToArray());
        Assert.Equal(1, exit);
        Assert.Contains("block(s) 0, 2 not trained yet", err);
    }

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void WholeBlockwiseRunWithTwoLocalProcessesGathersAModel()
    {
        using var dir = new TempDir();
        string converted = dir.File("converted"), run = dir.File("run"), text = dir.File("train.txt");
        File.WriteAllLines(text, File.ReadLines(SharedData.TinyStoriesVal).Skip(1000).Take(300));
        Assert.Equal(0, CliHarness.Run("convert", "--model", SharedData.Stories260KDir, "--method", "lolcats-tk", "--out", converted).Exit);
        var (exit, _, err) = CliHarness.Run("distill", "--model", converted, "--data", text, "--text-split", "stream", "--seq-len", "160", "--grad-accum", "1", "--max-steps", "2", "--block-size", "2", "--jobs", "2", "--out", run);
        Assert.True(exit == 0, err);
        Assert.Contains("block 2: done", err);
        for (int b = 0; b < 3; b++)
            Assert.True(File.Exists(Path.Combine(run, "blocks", $"block-{b}", AttentionTransferRun.BlockWeightsName)), $"block {b}");
        using var before = SafetensorsCheckpoint.Open(converted);
        using var after = SafetensorsCheckpoint.Open(Path.Combine(run, "model"));
        Assert.Equal(before.Names.Order(), after.Names.Order());
        foreach (var name in after.Names)
        {
            using var x = before.Read(name);
            using var y = after.Read(name);
            bool same = x.eq(y).all().item<bool>();
            Assert.True(same != Converter.IsAddedParameter(name), $"{name}: {(same ? "unchanged" : "changed")}");
        }
    }

    private static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.Names.ToDictionary(n => n, n => file.Read(n));
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(d.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(f, f.Replace(from, to));
    }
}
