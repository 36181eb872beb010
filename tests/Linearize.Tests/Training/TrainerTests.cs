using Linearize.Data;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using Linearize.Training;
using Linearize.Training.Lora;
using Linearize.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Training;

/// <summary>The trainer on a tiny converted model: only adapters change, and interrupted runs resume exactly.</summary>
[Collection("Torch")]
public sealed class TrainerTests
{
    private static readonly TrainingOptions Options = new()
    {
        Lora = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 },
        LearningRate = 1e-2,
        SequenceLength = 24,
        BatchSize = 2,
        GradientAccumulation = 2,
        Epochs = 3,
        EvalEvery = 3,
        Schedule = "cosine",
        WarmupSteps = 2,
        Seed = 5,
    };

    private static (List<TrainingExample> Train, List<TrainingExample> Val) Data(int vocab)
    {
        var rng = new Random(3);
        var examples = Enumerable.Range(0, 40).Select(_ =>
        {
            var ids = Enumerable.Range(0, rng.Next(5, 30)).Select(_ => rng.Next(3, vocab)).ToArray();
            var labels = ids.Select((x, i) => i < 3 ? TrainingExample.IgnoreIndex : x).ToArray();
            return new TrainingExample(ids, labels);
        }).ToList();
        var packed = SequencePacker.Pack(examples, 24);
        return (packed.Skip(4).ToList(), packed.Take(4).ToList());
    }

    private static LlamaForCausalLM Student()
    {
        using var teacher = TinyModels.Create("gqa-untied");
        var student = Converter.Convert(teacher, LigerConversionTests.Lin("liger-gla", window: 8));
        LoraInjector.Inject(student, Options.Lora, 11);
        return student;
    }

    private static Dictionary<string, Tensor> Snapshot(LlamaForCausalLM model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

    [Fact]
    public void OnlyAdaptersChangeAndTheLossFalls()
    {
        using var dir = new TempDir();
        using var model = Student();
        var (train, val) = Data(model.Config.VocabSize);
        var before = Snapshot(model);
        var trainer = new Trainer(model, train, val, Options, dir.Path);
        double initial = trainer.Evaluate();
        var result = trainer.Run(false, CancellationToken.None);
        Assert.True(result.Completed);
        Assert.Equal(trainer.TotalSteps, result.Steps);
        foreach (var (name, t) in model.state_dict())
        {
            if (name.Contains(".lora_B."))
                Assert.True((before[name] - t).abs().max().item<float>() > 0, $"{name} did not train");
            else if (!name.Contains(".lora_A."))
                TensorAssert.BitEqual($"frozen {name}", before[name], t);
        }

        Assert.True(result.FinalEvalLoss < initial, $"validation loss {initial:F4} → {result.FinalEvalLoss:F4}");
        Assert.True(File.Exists(trainer.MetricsPath));
        Assert.Equal(result.Steps, File.ReadAllLines(trainer.MetricsPath).Length);
    }

    [Theory]
    [InlineData(4, false)] // Ctrl-C after step 4: a checkpoint is saved at that step
    [InlineData(5, true)]  // killed during step 5..: resumes from the periodic checkpoint of step 3
    public void InterruptedRunResumesToTheSameWeights(int stopAfter, bool killed)
    {
        Dictionary<string, Tensor> reference;
        using (var dir = new TempDir())
        using (var model = Student())
        {
            var (train, val) = Data(model.Config.VocabSize);
            new Trainer(model, train, val, Options, dir.Path).Run(false, CancellationToken.None);
            reference = Snapshot(model);
        }

        using var runDir = new TempDir();
        using (var first = Student())
        {
            var (train, val) = Data(first.Config.VocabSize);
            using var cts = new CancellationTokenSource();
            var trainer = new Trainer(first, train, val, Options, runDir.Path);
            if (killed)
            {
                Assert.Throws<InvalidOperationException>(() => trainer.Run(false, cts.Token, m =>
                {
                    if (m.Step == stopAfter)
                        throw new InvalidOperationException("process killed");
                }));
            }
            else
            {
                var partial = trainer.Run(false, cts.Token, m =>
                {
                    if (m.Step == stopAfter)
                        cts.Cancel();
                });
                Assert.False(partial.Completed);
                Assert.Equal(stopAfter, partial.Steps);
            }
        }

        using var second = Student(); // a new process: fresh model, adapters re-initialised, then the checkpoint
        var (train2, val2) = Data(second.Config.VocabSize);
        var resumed = new Trainer(second, train2, val2, Options, runDir.Path).Run(true, CancellationToken.None);
        Assert.True(resumed.Completed);
        foreach (var (name, t) in second.state_dict())
            TensorAssert.BitEqual($"resumed {name}", reference[name], t);
    }

    [Fact]
    public void BFloat16WeightsTrainWithFloat32Adapters()
    {
        using var dir = new TempDir();
        using var teacher = TinyModels.Create("gqa-untied");
        teacher.to(ScalarType.BFloat16);
        using var model = Converter.Convert(teacher, LigerConversionTests.Lin("liger-gla", window: 8));
        LoraInjector.Inject(model, Options.Lora, 11);
        var before = Snapshot(model);
        var (train, val) = Data(model.Config.VocabSize);
        var result = new Trainer(model, train, val, Options with { MaxSteps = 3 }, dir.Path).Run(false, CancellationToken.None);
        Assert.True(result.Completed);
        foreach (var (name, p) in model.named_parameters())
        {
            if (name.Contains(".lora_"))
                Assert.Equal(ScalarType.Float32, p.dtype);
            else
            {
                Assert.Equal(ScalarType.BFloat16, p.dtype);
                TensorAssert.BitEqual($"frozen {name}", before[name], p);
            }
        }

        Assert.True(double.IsFinite(result.FinalEvalLoss!.Value));
    }

    [Fact]
    public void NonFiniteLossStopsWithAClearMessage()
    {
        using var dir = new TempDir();
        using var model = Student();
        using (no_grad())
            model.named_parameters().First(p => p.name.Contains("lora_B")).parameter.FillWith(float.NaN);

        var (train, val) = Data(model.Config.VocabSize);
        var e = Assert.Throws<LinearizeException>(() => new Trainer(model, train, val, Options, dir.Path).Run(false, CancellationToken.None));
        Assert.Contains("non-finite training loss", e.Message);
        Assert.Contains("last good checkpoint", e.Message);
    }

    [Fact]
    public void ResumeWithDifferentOptionsIsRefused()
    {
        using var dir = new TempDir();
        using (var model = Student())
        {
            var (train, val) = Data(model.Config.VocabSize);
            new Trainer(model, train, val, Options with { MaxSteps = 2 }, dir.Path).Run(false, CancellationToken.None);
        }

        using var other = Student();
        var (t2, v2) = Data(other.Config.VocabSize);
        var e = Assert.Throws<LinearizeException>(() => new Trainer(other, t2, v2, Options with { MaxSteps = 2, LearningRate = 0.5 }, dir.Path).Run(true, CancellationToken.None));
        Assert.Contains("different options", e.Message);
        Assert.Contains("--lr 0.01 → 0.5", e.Message); // a resume with changed options names the option that differs
    }
}
