using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Data;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tokenization;
using Linearize.Training.Distillation;
using Linearize.Training;
using Linearize.Workflows;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Workflows;

/// <summary>
/// LoLCATs stage 1, attention transfer (docs/METHODS.md §2.5): only the parameters a method adds train (LoLCATs' feature
/// maps and window factors; a Liger layer's learned gate <c>g_proj</c> and delta-rule <c>b_proj</c>), against the teacher's
/// attention outputs, with the reference recipe by default (AdamW lr 1e-2, no weight decay, reduce-on-plateau,
/// MSE × 1000). Joint (every layer in one run) or block-wise (§2.7): the residual stream at each block boundary is
/// saved once (<see cref="PrepareBlocks"/>), each block then trains alone from its file (<see cref="RunBlock"/>, in any
/// process on any machine sharing the directory), and <see cref="Gather"/> assembles the model.
/// Output directory: <c>checkpoints/</c>, <c>metrics.jsonl</c> (joint) or <c>blocks/</c> (block-wise), and
/// <c>model/</c>, the converted model with the learned maps (written to a temporary name, then renamed).
/// </summary>
public sealed class AttentionTransferRun
{
    public const string ModelDirectoryName = "model";
    public const string BlocksDirectoryName = "blocks";
    public const string BlockWeightsName = "block.safetensors";

    /// <summary>The reference recipe (<c>distill_alpaca_clean_xent0_mse1000_lr1e-2.yaml</c>): lr 1e-2, wd 0,
    /// ReduceLROnPlateau, 2 epochs of 8 × 1024 tokens per step, no gradient clipping (the code has no clip call).</summary>
    public static TrainingOptions Recipe => new()
    {
        LearningRate = 1e-2, WeightDecay = 0, Schedule = "plateau", MaxGradNorm = 0, Epochs = 2, GradientAccumulation = 8,
        SequenceLength = 1024, EvalEvery = 100,
    };

    public sealed record Options
    {
        public required string ModelPath { get; init; }
        public string? TokenizerPath { get; init; }
        public required string DataPath { get; init; }
        public string? ValidationDataPath { get; init; }
        public TrainingData.Options Data { get; init; } = new();
        public TrainingOptions Training { get; init; } = Recipe;
        public double MseFactor { get; init; } = AttentionTransferObjective.DefaultMseFactor;
        public double XentFactor { get; init; }
        public required string OutputDirectory { get; init; }
        public bool Resume { get; init; }

        /// <summary>Layers per block for block-wise transfer (null = joint).</summary>
        public int? BlockSize { get; init; }
    }

    public sealed record Result(TrainingResult Training, TrainingData.Result Data, long TrainableParameters, string? ModelDirectory,
        double WallSeconds);

    private readonly Options _o;

    public AttentionTransferRun(Options options)
    {
        options.Training.Validate();
        if (options.MseFactor < 0 || options.XentFactor < 0 || options.MseFactor + options.XentFactor <= 0)
            throw new LinearizeException($"--mse-factor and --xent-factor must be ≥ 0 and not both 0 (got {options.MseFactor}, {options.XentFactor})");
        if (options.BlockSize is < 1)
            throw new LinearizeException($"--block-size must be at least 1, got {options.BlockSize}");
        _o = options;
    }

    public string ModelDirectory => Path.Combine(_o.OutputDirectory, ModelDirectoryName);

    public string BlocksDirectory => Path.Combine(_o.OutputDirectory, BlocksDirectoryName);

    public string BlockDirectory(int block) => Path.Combine(BlocksDirectory, $"block-{block}");

    public string BoundaryPath(int block) => Path.Combine(BlocksDirectory, "inputs", $"boundary-{block}.safetensors");

    /// <summary>Trains every transfer layer in one run and writes <c>model/</c>.</summary>
    public Result Run(CancellationToken cancel, Action<string>? log = null, Action<TrainingMetrics>? onStep = null)
    {
        var watch = Stopwatch.StartNew();
        var (model, tokenizer, source) = Load();
        using var _ = model;
        var data = PrepareData(tokenizer);
        long trainable = Unfreeze(model, 0, model.Config.NumHiddenLayers);
        log?.Invoke($"attention transfer: {trainable:N0} trainable parameters (the method's added ones) on {Plural.Of(data.Train.Count, "sequence")}");
        var trainer = new Trainer(model, data.Train, data.Validation, _o.Training, _o.OutputDirectory,
            new AttentionTransferObjective(_o.MseFactor, _o.XentFactor));
        var result = trainer.Run(_o.Resume, cancel, onStep);
        if (!result.Completed)
            return new Result(result, data, trainable, null, watch.Elapsed.TotalSeconds);
        LinearizationPipeline.RestoreTrainable(model, result.BestCheckpoint ?? result.LastCheckpoint);
        SaveModel(model, source.TokenizerPath);
        return new Result(result, data, trainable, ModelDirectory, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Number of blocks of <see cref="Options.BlockSize"/> layers.</summary>
    public int BlockCount(int layers) => (layers + BlockSize - 1) / BlockSize;

    private int BlockSize => _o.BlockSize ?? throw new LinearizeException("block-wise transfer needs --block-size");

    /// <summary>Saves the residual stream at every block boundary for every training and validation sequence:
    /// <c>blocks/inputs/boundary-{b}.safetensors</c> holds the input of block b (<c>train.{i}</c>, <c>validation.{i}</c>,
    /// each <c>[T, C]</c> float32). The stream is the teacher's: every transfer layer passes the teacher's attention on.
    /// Streamed: the embedding rows are read from the checkpoint, then each layer is loaded alone, run over every
    /// stored sequence and released, so memory is one layer plus the stream, not the model.</summary>
    public int PrepareBlocks(Action<string>? log = null, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        var (source, config, tokenizer) = Describe();
        using var checkpoint = ModelLoader.OpenCheckpoint(source); // every shard checked before any work
        var data = PrepareData(tokenizer);
        int layers = config.NumHiddenLayers, blocks = BlockCount(layers);
        var sequences = data.Train.Select((e, i) => ($"train.{i}", e)).Concat(data.Validation.Select((e, i) => ($"validation.{i}", e))).ToList();
        log?.Invoke($"saving the residual stream at {blocks} block boundaries for {Plural.Of(sequences.Count, "sequence")} " +
                    $"({(double)blocks * sequences.Count * _o.Training.SequenceLength * config.HiddenSize * 4 / (1 << 20):F0} MiB), one layer at a time");
        Directory.CreateDirectory(Path.GetDirectoryName(BoundaryPath(0))!);
        using var recorder = new AttentionTransferRecorder(layers: new HashSet<int>()); // pass the teacher's attention on, record nothing
        using var noGrad = no_grad();
        // The float32 model's embedding lookup: its rows, widened exactly from the stored type.
        var hidden = sequences.Select(s => checkpoint.ReadRows(EmbeddingName, s.e.InputIds)).ToList();
        try
        {
            for (int b = 0; b < blocks; b++)
            {
                var named = sequences.Select((s, i) => new KeyValuePair<string, Tensor>(s.Item1, hidden[i])).ToList();
                SafetensorsWriter.Write(BoundaryPath(b), named, new Dictionary<string, string>
                {
                    ["boundary"] = new JsonObject { ["block"] = b, ["first_layer"] = b * BlockSize, ["fingerprint"] = DataFingerprint(data) }.ToJsonString(),
                });
                progress?.Invoke(b + 1, blocks);
                if (b == blocks - 1)
                    break;
                for (int l = b * BlockSize; l < (b + 1) * BlockSize; l++)
                {
                    // Between layers: the boundary files written so far are whole, and a new --prepare starts over.
                    cancel.ThrowIfCancellationRequested();
                    RunLayer(checkpoint, config, l, recorder, hidden);
                }
            }
        }
        finally
        {
            foreach (var h in hidden)
                h.Dispose();
        }

        return blocks;
    }

    private const string EmbeddingName = "model.embed_tokens.weight";

    /// <summary>Loads layer <paramref name="layer"/> alone, replaces each hidden state <c>[T, C]</c> by its output
    /// (a LoLCATs layer in transfer mode passes the teacher's attention on), releases the layer.</summary>
    private static void RunLayer(SafetensorsCheckpoint checkpoint, LlamaConfig config, int layer, AttentionTransferRecorder recorder, List<Tensor> hidden)
    {
        // One layer, wide: it runs once per sequence, and widening bfloat16 projections on each run would cost more
        // than the half layer it saves.
        using var model = ModelLoader.LoadLayers(checkpoint, config, layer, layer + 1, keepStoredProjections: false);
        if (model.Model.Layer(layer).SelfAttention is LolcatsAttention a)
            a.Transfer = recorder;
        for (int i = 0; i < hidden.Count; i++)
        {
            using var scope = NewDisposeScope();
            var next = model.Model.ForwardLayers(hidden[i].unsqueeze(0).to(model.DType), layer, layer + 1)[0]
                .to(ScalarType.Float32).DetachFromDisposeScope();
            hidden[i].Dispose();
            hidden[i] = next;
        }
    }

    /// <summary>Trains block <paramref name="block"/> alone from its boundary file; on completion writes the block's
    /// learned parameters to <c>blocks/block-{i}/block.safetensors</c>. Only the block's layers are loaded (from the
    /// checkpoint, one tensor at a time), so memory is the block, not the model.</summary>
    public Result RunBlock(int block, CancellationToken cancel, Action<string>? log = null, Action<TrainingMetrics>? onStep = null)
    {
        var watch = Stopwatch.StartNew();
        var (source, config, tokenizer) = Describe();
        int layers = config.NumHiddenLayers, blocks = BlockCount(layers);
        if (block < 0 || block >= blocks)
            throw new LinearizeException($"--block {block}: the model has {Plural.Of(blocks, "block")} of {BlockSize} layers (0..{blocks - 1})");
        string inputs = BoundaryPath(block);
        if (!File.Exists(inputs))
            throw new LinearizeException($"{inputs}: not found; save the block inputs first (linearize distill ... --block-size {BlockSize} --prepare)");
        var data = PrepareData(tokenizer);
        using (var file = SafetensorsFile.Open(inputs))
        {
            var meta = JsonNode.Parse(file.Metadata.GetValueOrDefault("boundary") ?? "{}")!;
            if (meta["fingerprint"]?.GetValue<string>() != DataFingerprint(data) || meta["first_layer"]?.GetValue<int>() != block * BlockSize)
                throw new LinearizeException($"{inputs}: saved for other data or another --block-size; prepare the inputs again");
        }

        int from = block * BlockSize, to = Math.Min(layers, from + BlockSize);
        LlamaForCausalLM model;
        using (var checkpoint = ModelLoader.OpenCheckpoint(source))
            model = ModelLoader.LoadLayers(checkpoint, config, from, to, keepStoredProjections: true); // frozen: half the memory in bfloat16
        using var _m = model;
        long trainable = Unfreeze(model, from, to);
        if (trainable == 0)
            throw new LinearizeException($"block {block} (layers {from}..{to - 1}) has no layer with parameters to transfer");
        log?.Invoke($"block {block}: layers {from}..{to - 1}, {trainable:N0} trainable parameters, {Plural.Of(data.Train.Count, "sequence")}");
        using var objective = new BlockTransferObjective(inputs, data.Train, data.Validation, from, to, _o.MseFactor, _o.XentFactor);
        var trainer = new Trainer(model, data.Train, data.Validation, _o.Training, BlockDirectory(block), objective);
        var result = trainer.Run(_o.Resume, cancel, onStep);
        if (!result.Completed)
            return new Result(result, data, trainable, null, watch.Elapsed.TotalSeconds);
        LinearizationPipeline.RestoreTrainable(model, result.BestCheckpoint ?? result.LastCheckpoint);
        var learned = model.named_parameters().Where(p => p.parameter.requires_grad)
            .Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter.detach())).ToList();
        SafetensorsWriter.Write(Path.Combine(BlockDirectory(block), BlockWeightsName), learned);
        return new Result(result, data, trainable, null, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Whether block <paramref name="block"/> has finished (its learned parameters are saved).</summary>
    public bool BlockDone(int block) => File.Exists(Path.Combine(BlockDirectory(block), BlockWeightsName));

    /// <summary>
    /// Assembles <c>model/</c> from the converted model and every block's learned parameters without loading the model
    /// (docs/BLOCKWISE-TRANSFER.md, "Memory"): each weight file of the converted checkpoint that holds no learned
    /// parameter is hard-linked into <c>model/</c> (copied where the file system cannot link), and each one that does is
    /// rewritten one tensor at a time, the learned parameters in float32 as they were trained and every other tensor as
    /// stored; config.json is copied as it is. Memory is one tensor. Loaded in float32, the result equals, bit for bit,
    /// the converted model with the learned parameters copied in and saved whole.
    /// </summary>
    public string Gather(Action<string>? log = null)
    {
        var (source, config, _) = Describe();
        int blocks = BlockCount(config.NumHiddenLayers);
        var missing = Enumerable.Range(0, blocks).Where(b => !BlockDone(b) && HasTransferLayer(config, b)).ToList();
        if (missing.Count > 0)
            throw new LinearizeException($"{BlocksDirectory}: block(s) {string.Join(", ", missing)} not trained yet (no {BlockWeightsName})");
        using var checkpoint = ModelLoader.OpenCheckpoint(source);
        var learnedFiles = new List<SafetensorsFile>();
        try
        {
            // Where each learned parameter is: its block's file, checked against the checkpoint's name and shape.
            var learned = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            for (int b = 0; b < blocks; b++)
            {
                if (!BlockDone(b))
                    continue;
                var file = SafetensorsFile.Open(Path.Combine(BlockDirectory(b), BlockWeightsName));
                learnedFiles.Add(file);
                foreach (var name in file.Names)
                {
                    if (!checkpoint.Contains(name))
                        throw new LinearizeException($"{BlockDirectory(b)}: parameter '{name}' is not in the model");
                    if (!file.GetInfo(name).Shape.SequenceEqual(checkpoint.GetInfo(name).Shape))
                        throw new LinearizeException($"{BlockDirectory(b)}: parameter '{name}' has shape [{string.Join(", ", file.GetInfo(name).Shape)}], " +
                                                     $"the model's is [{string.Join(", ", checkpoint.GetInfo(name).Shape)}]");
                    learned[name] = file;
                }
            }

            int linked = 0, copied = 0, rewritten = 0;
            StagedDirectory.Write(ModelDirectory, staging =>
            {
                var weightMap = new JsonObject();
                long total = 0;
                foreach (var file in checkpoint.Files)
                {
                    string name = Path.GetFileName(file.FilePath), target = Path.Combine(staging, name);
                    if (!file.Names.Any(learned.ContainsKey))
                    {
                        if (HardLink.TryCreate(file.FilePath, target))
                            linked++;
                        else
                        {
                            File.Copy(file.FilePath, target);
                            copied++;
                        }
                    }
                    else
                    {
                        SafetensorsWriter.Write(target, file.Tensors.Values.Select(t => learned.TryGetValue(t.Name, out var from)
                            ? new SafetensorsEntry(t.Name, from.GetInfo(t.Name).DType.ToScalarType(), t.Shape, () => from.Read(t.Name), Owned: true)
                            : new SafetensorsEntry(t.Name, t.DType.ToScalarType(), t.Shape, () => file.Read(t.Name), Owned: true)).ToList());
                        rewritten++;
                    }

                    foreach (var t in file.Tensors.Values)
                    {
                        weightMap[t.Name] = name;
                        total += learned.TryGetValue(t.Name, out var from) ? from.GetInfo(t.Name).ByteCount : t.ByteCount;
                    }
                }

                if (checkpoint.Files.Count > 1)
                    SafetensorsWriter.WriteIndex(staging, weightMap, total);
                File.Copy(Path.Combine(source.Path, "config.json"), Path.Combine(staging, "config.json")); // as it was, byte for byte
                ModelLoader.CopyTokenizer(source.TokenizerPath, staging);
            });
            log?.Invoke($"gathered {Plural.Of(blocks, "block")}: {Plural.Of(learned.Count, "learned tensor")} in " +
                        $"{Plural.Of(rewritten, "rewritten file")}, {Plural.Of(linked, "weight file")} linked, {copied} copied");
        }
        finally
        {
            foreach (var f in learnedFiles)
                f.Dispose();
        }

        return ModelDirectory;
    }

    private bool HasTransferLayer(LlamaConfig config, int block) =>
        Enumerable.Range(block * BlockSize, Math.Min(BlockSize, config.NumHiddenLayers - block * BlockSize)).Any(l => IsTransferLayer(config, l));

    private (LlamaForCausalLM Model, TextTokenizer Tokenizer, ModelSource Source) Load()
    {
        var loaded = ModelLoader.LoadWithTokenizer(_o.ModelPath, _o.TokenizerPath);
        if (!AttentionTransferObjective.TransferLayers(loaded.Model).Any())
        {
            loaded.Model.Dispose();
            throw new LinearizeException($"{_o.ModelPath}: has no layers with parameters to transfer; {AttentionTransferObjective.HowToConvert}");
        }

        return loaded;
    }

    /// <summary>The model's source, config and tokenizer, without its weights; refuses a model with no layer that attention
    /// transfer trains.</summary>
    private (ModelSource Source, LlamaConfig Config, TextTokenizer Tokenizer) Describe()
    {
        var source = ModelSource.Resolve(_o.ModelPath, _o.TokenizerPath);
        var config = source.LoadConfig();
        var tokenizer = ModelLoader.LoadTokenizer(source, config);
        if (!Enumerable.Range(0, config.NumHiddenLayers).Any(l => IsTransferLayer(config, l)))
            throw new LinearizeException($"{_o.ModelPath}: has no layers with parameters to transfer; {AttentionTransferObjective.HowToConvert}");
        return (source, config, tokenizer);
    }

    /// <summary>Whether layer <paramref name="layer"/> has parameters attention transfer learns (<see cref="ITransferLayer"/>),
    /// read from the configuration alone: a LoLCATs layer, or a Liger layer with added projections (β, a learned gate).</summary>
    private static bool IsTransferLayer(LlamaConfig config, int layer)
    {
        var lin = LinearizationConfig.FromModel(config);
        var type = MixerRegistry.LayerType(layer, lin);
        return type == typeof(LolcatsAttention) || (type == typeof(LigerAttention) && LigerAttention.AddedParameterFragments(lin!).Count > 0);
    }

    private TrainingData.Result PrepareData(TextTokenizer tokenizer) =>
        TrainingData.Prepare(_o.DataPath, _o.ValidationDataPath, tokenizer,
            _o.Data with { SequenceLength = _o.Training.SequenceLength, Seed = _o.Training.Seed });

    /// <summary>Freezes everything, then makes the added parameters of layers [from, to) trainable.</summary>
    private static long Unfreeze(LlamaForCausalLM model, int from, int to)
    {
        foreach (var p in model.parameters())
            p.requires_grad = false;
        long count = 0;
        foreach (var layer in Enumerable.Range(from, to - from).Select(model.Model.Layer))
        {
            if (layer.SelfAttention is not ITransferLayer a)
                continue;
            foreach (var p in a.TransferParameters)
            {
                p.requires_grad = true;
                count += p.numel();
            }
        }

        return count;
    }

    private static string DataFingerprint(TrainingData.Result data) =>
        $"{data.Train.Count}/{data.Validation.Count}/{data.Train.Sum(e => (long)e.InputIds.Sum())}/{data.Validation.Sum(e => (long)e.InputIds.Sum())}";

    /// <summary>Writes <c>model/</c> whole or not at all (<see cref="ModelLoader.SaveHuggingFace"/> stages it).</summary>
    private void SaveModel(LlamaForCausalLM model, string? tokenizerPath) =>
        ModelLoader.SaveHuggingFace(model, model.Config, ModelDirectory, tokenizerPath);
}
