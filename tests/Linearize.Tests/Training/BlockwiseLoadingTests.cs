using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using Linearize.Tokenization;
using Linearize.Training;
using Linearize.Training.Distillation;
using Linearize.Workflows;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Training;

/// <summary>
/// Block-wise attention transfer reads only what a block needs: <c>--block</c> loads the block's layers alone and
/// <c>--prepare</c> one layer at a time. Both must give, bit for bit, what the whole model loaded in memory gives
/// (computed here the way the whole-model code did it), for float32 and bfloat16, single-file and sharded checkpoints.
/// </summary>
[Collection("Torch")]
public sealed class BlockwiseLoadingTests
{
    private const int Layers = 5, BlockSize = 2, SeqLen = 64;

    private static readonly TrainingOptions Options = AttentionTransferRun.Recipe with
    {
        SequenceLength = SeqLen, GradientAccumulation = 2, MaxSteps = 4, EvalEvery = 2, Seed = 3,
    };

    /// <summary>A seeded random 5-layer teacher (vocabulary of tok512) converted to lolcats-sw and saved as a Hugging
    /// Face directory in <paramref name="dtype"/>, split into shards of at most <paramref name="shardBytes"/>.</summary>
    private static string Checkpoint(TempDir dir, ScalarType dtype, long shardBytes)
    {
        var config = LlamaConfig.FromJson(TinyModels.BaseJson(layers: Layers, vocab: 512), "tiny 5-layer");
        using var teacher = TinyModels.Create(config, seed: 11);
        using var student = Converter.Convert(teacher, LolcatsConversionTests.Lin("lolcats-sw", window: 8));
        if (dtype != ScalarType.Float32)
            student.to(dtype);
        string path = dir.File("model");
        ModelLoader.SaveHuggingFace(student, student.Config, path, SharedData.Tok512, shardBytes);
        return path;
    }

    private static string Text(TempDir dir)
    {
        string path = dir.File("train.txt");
        File.WriteAllLines(path, File.ReadLines(SharedData.TinyStoriesVal).Skip(1000).Take(150));
        return path;
    }

    private static AttentionTransferRun Run(string model, string text, string outDir) => new(new AttentionTransferRun.Options
    {
        ModelPath = model, DataPath = text, Training = Options, OutputDirectory = outDir, BlockSize = BlockSize,
    });

    private static TrainingData.Result Data(string text, TextTokenizer tokenizer) =>
        TrainingData.Prepare(text, null, tokenizer, new TrainingData.Options { SequenceLength = SeqLen, Seed = Options.Seed });

    [SharedTheory("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    [InlineData("float32", 0)]
    [InlineData("bfloat16", 0)]
    [InlineData("bfloat16", 40_000)]
    public void StreamedPrepareAndLazyBlocksEqualTheWholeModelBitForBit(string dtypeName, long shardBytes)
    {
        using var dir = new TempDir();
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        string model = Checkpoint(dir, dtype, shardBytes == 0 ? 5L << 30 : shardBytes);
        if (shardBytes > 0)
            Assert.True(File.Exists(Path.Combine(model, SafetensorsWriter.IndexFileName)), "the checkpoint is sharded");
        string text = Text(dir);
        var run = Run(model, text, dir.File("run"));
        // A signal stops --prepare between layers (the first boundary is whole), and a new --prepare starts over.
        Assert.Throws<OperationCanceledException>(() => run.PrepareBlocks(cancel: new CancellationToken(canceled: true)));
        Assert.True(File.Exists(run.BoundaryPath(0)));
        Assert.False(File.Exists(run.BoundaryPath(1)));
        Assert.Equal(3, run.PrepareBlocks());

        // The whole model in memory, as before: float32 weights, every layer held.
        var (whole, tokenizer, _) = ModelLoader.LoadWithTokenizer(model);
        using var _w = whole;
        var data = Data(text, tokenizer);
        var expected = WholeModelBoundaries(whole, data);
        for (int b = 0; b < 3; b++)
        {
            using var file = SafetensorsFile.Open(run.BoundaryPath(b));
            Assert.Equal(expected[b].Keys.Order(), file.Names.Order());
            foreach (var (name, t) in expected[b])
            {
                using var saved = file.Read(name);
                TensorAssert.BitEqual($"boundary {b} {name}", t, saved);
            }
        }

        // Blocks 1 (layers 2–3) and 2 (layer 4, the short last block) loaded alone = trained inside the whole model.
        foreach (int block in new[] { 1, 2 })
        {
            Assert.True(run.RunBlock(block, CancellationToken.None).Training.Completed);
            int from = block * BlockSize, to = Math.Min(Layers, from + BlockSize);
            var reference = TrainInWholeModel(whole, data, run.BoundaryPath(block), from, to, dir.File($"whole-{block}"));
            using var file = SafetensorsFile.Open(Path.Combine(run.BlockDirectory(block), AttentionTransferRun.BlockWeightsName));
            Assert.Equal(reference.Keys.Order(), file.Names.Order());
            foreach (var (name, t) in reference)
            {
                using var saved = file.Read(name);
                TensorAssert.BitEqual($"block {block} {name}", t, saved);
            }
        }

        foreach (var boundary in expected)
            foreach (var t in boundary.Values)
                t.Dispose();
    }

    /// <summary>
    /// <c>--gather</c> streams: it links every weight file holding no learned parameter and rewrites the others one tensor
    /// at a time, and the result, loaded in float32, equals bit for bit what gathering in memory gave (the converted model
    /// loaded whole in float32, each block's parameters copied in, saved). Sharded bfloat16 here, so some shards mix
    /// learned and frozen tensors and some hold only frozen ones.
    /// </summary>
    [SharedFact("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void StreamedGatherEqualsTheWholeModelWithTheBlocksCopiedIn()
    {
        using var dir = new TempDir();
        string model = Checkpoint(dir, ScalarType.BFloat16, 40_000), text = Text(dir);
        var run = Run(model, text, dir.File("run"));
        Assert.Equal(3, run.PrepareBlocks());
        Assert.Contains("block(s) 0, 1, 2 not trained yet", Assert.Throws<LinearizeException>(() => run.Gather()).Message);
        for (int b = 0; b < 3; b++)
            Assert.True(run.RunBlock(b, CancellationToken.None).Training.Completed);
        var log = new List<string>();
        string gathered = run.Gather(log.Add);

        // As Gather did before: the whole model in float32, every block's parameters copied in.
        using var expected = ModelLoader.Load(ModelSource.Resolve(model));
        var parameters = expected.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int learned = 0;
        using (no_grad())
            for (int b = 0; b < 3; b++)
            {
                using var file = SafetensorsFile.Open(Path.Combine(run.BlockDirectory(b), AttentionTransferRun.BlockWeightsName));
                foreach (var name in file.Names)
                {
                    using var value = file.Read(name);
                    parameters[name].copy_(value);
                    learned++;
                }
            }

        using var actual = ModelLoader.Load(ModelSource.Resolve(gathered));
        var actualState = actual.state_dict();
        Assert.Equal(expected.state_dict().Keys.Order(), actualState.Keys.Order());
        foreach (var (name, t) in expected.state_dict())
            TensorAssert.BitEqual(name, t, actualState[name]);

        // Frozen tensors keep their stored type; the learned ones are float32, as trained.
        using var source = SafetensorsCheckpoint.Open(model);
        using var output = SafetensorsCheckpoint.Open(gathered);
        Assert.Equal(source.Files.Select(f => Path.GetFileName(f.FilePath)).Order(), output.Files.Select(f => Path.GetFileName(f.FilePath)).Order());
        Assert.All(output.Names, n => Assert.Equal(Converter.IsAddedParameter(n) ? SafetensorsDType.F32 : SafetensorsDType.BF16, output.GetInfo(n).DType));
        int pure = source.Files.Count(f => !f.Names.Any(Converter.IsAddedParameter));
        Assert.True(pure > 0 && pure < source.Files.Count, $"{pure} of {source.Files.Count} shards hold no learned parameter");
        Assert.Equal($"gathered 3 blocks: {learned} learned tensors in {source.Files.Count - pure} rewritten files, {pure} weight files linked, 0 copied",
            Assert.Single(log));
        Assert.Equal(File.ReadAllText(Path.Combine(model, "config.json")), File.ReadAllText(Path.Combine(gathered, "config.json")));
    }

    [SharedFact("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void ASliceHoldsOnlyItsLayersUnderTheirWholeModelNames()
    {
        using var dir = new TempDir();
        string model = Checkpoint(dir, ScalarType.BFloat16, 40_000);
        var config = ModelSource.Resolve(model).LoadConfig();
        using var checkpoint = SafetensorsCheckpoint.Open(model);
        using var wide = ModelLoader.LoadLayers(checkpoint, config, 2, 4, keepStoredProjections: false);
        Assert.All(wide.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        using var slice = ModelLoader.LoadLayers(checkpoint, config, 2, 4, keepStoredProjections: true);
        using var whole = ModelLoader.Load(ModelSource.Resolve(model));
        var wholeState = whole.state_dict();
        var names = slice.state_dict().Keys.ToList();
        Assert.Equal(wholeState.Keys.Where(k => k.StartsWith("model.layers.2.", StringComparison.Ordinal) || k.StartsWith("model.layers.3.", StringComparison.Ordinal)).Order(),
            names.Order());
        foreach (var (name, t) in slice.state_dict())
        {
            // The frozen projections stay bfloat16 (half the memory); everything else is float32, as in the whole model.
            Assert.Equal(name.EndsWith("_proj.weight", StringComparison.Ordinal) ? ScalarType.BFloat16 : ScalarType.Float32, t.dtype);
            using var widened = t.to(ScalarType.Float32);
            TensorAssert.BitEqual(name, wholeState[name], widened);
        }

        Assert.Equal(ScalarType.Float32, slice.DType);
        Assert.True(slice.Model.IsSlice);
        Assert.Throws<InvalidOperationException>(() => slice.Model.EmbedTokens);
        Assert.Throws<ArgumentOutOfRangeException>(() => slice.Model.ForwardLayers(zeros(1, 4, 32), 1, 3));
    }

    [SharedFact("models/stories260K/tok512.bin", "data/tinystories/val.txt")]
    public void AMissingOrTruncatedShardIsOneLineNamingTheFile()
    {
        using var dir = new TempDir();
        string model = Checkpoint(dir, ScalarType.BFloat16, 40_000), text = Text(dir), run = dir.File("run");
        string[] common = { "distill", "--model", model, "--data", text, "--seq-len", $"{SeqLen}", "--grad-accum", "2", "--max-steps", "2",
            "--block-size", $"{BlockSize}" };
        var (exit, _, err) = CliHarness.Run(common.Concat(new[] { "--out", run, "--prepare" }).ToArray());
        Assert.True(exit == 0, err);

        var shards = Directory.GetFiles(model, "model-*.safetensors").Order().ToList();
        Assert.True(shards.Count > 2, $"{shards.Count} shards");
        string shard = shards[1], saved = dir.File("saved-shard");
        File.Move(shard, saved);
        foreach (var step in new[] { new[] { "--out", run, "--block", "1" }, new[] { "--out", dir.File("run2"), "--prepare" } })
        {
            (exit, _, err) = CliHarness.Run(common.Concat(step).ToArray());
            Assert.Equal(1, exit);
            Assert.Single(err.Trim().Split('\n'));
            Assert.Contains($"shard {Path.GetFileName(shard)} is missing", err);
        }

        var bytes = File.ReadAllBytes(saved);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 100)]);
        (exit, _, err) = CliHarness.Run(common.Concat(new[] { "--out", run, "--block", "1" }).ToArray());
        Assert.Equal(1, exit);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(shard, err);
        Assert.Contains("truncated", err);
    }

    /// <summary>The boundaries as the whole model computes them: embeddings, then each block's layers in one
    /// <see cref="LlamaModel.ForwardLayers"/> with every LoLCATs layer passing the teacher's attention on.</summary>
    private static List<Dictionary<string, Tensor>> WholeModelBoundaries(LlamaForCausalLM model, TrainingData.Result data)
    {
        var sequences = data.Train.Select((e, i) => ($"train.{i}", e)).Concat(data.Validation.Select((e, i) => ($"validation.{i}", e))).ToList();
        using var recorder = new AttentionTransferRecorder(layers: new HashSet<int>());
        var attached = AttentionTransferObjective.Attach(model, recorder);
        using var noGrad = no_grad();
        var hidden = sequences.Select(s => model.Model.EmbedTokens.forward(tensor(s.e.InputIds.Select(i => (long)i).ToArray()).view(1, -1))[0]
            .to(ScalarType.Float32)).ToList();
        var boundaries = new List<Dictionary<string, Tensor>>();
        for (int b = 0; b < 3; b++)
        {
            boundaries.Add(sequences.Select((s, i) => (s.Item1, hidden[i].clone())).ToDictionary(x => x.Item1, x => x.Item2));
            if (b < 2)
                hidden = hidden.Select(h => model.Model.ForwardLayers(h.unsqueeze(0), b * BlockSize, (b + 1) * BlockSize)[0].to(ScalarType.Float32)).ToList();
        }

        foreach (var a in attached)
            a.Transfer = null;
        return boundaries;
    }

    /// <summary>Layers <c>[from, to)</c> trained inside the whole model from the saved boundary file: everything frozen
    /// but their feature maps and window factors; returns the learned parameters of the best (or last) checkpoint.</summary>
    private static Dictionary<string, Tensor> TrainInWholeModel(LlamaForCausalLM model, TrainingData.Result data, string inputs, int from, int to, string outDir)
    {
        foreach (var p in model.parameters())
            p.requires_grad = false;
        foreach (var layer in model.Model.Layers.Skip(from).Take(to - from))
            if (layer.SelfAttention is LolcatsAttention a)
                foreach (var p in a.TransferParameters)
                    p.requires_grad = true;
        using var objective = new BlockTransferObjective(inputs, data.Train, data.Validation, from, to, AttentionTransferObjective.DefaultMseFactor, 0);
        var result = new Trainer(model, data.Train, data.Validation, Options, outDir, objective).Run(false, CancellationToken.None);
        LinearizationPipeline.RestoreTrainable(model, result.BestCheckpoint ?? result.LastCheckpoint);
        var learned = model.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.detach().clone());
        foreach (var p in model.parameters())
            p.requires_grad = false;
        return learned;
    }
}
