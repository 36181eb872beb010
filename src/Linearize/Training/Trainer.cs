using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Data;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Training.Optim;
using Linearize.Modeling;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using AdamW = Linearize.Training.Optim.AdamW;
using static TorchSharp.torch;

namespace Linearize.Training;

/// <summary>
/// Next-token training of the trainable (LoRA) parameters of a model: micro-batches with gradient accumulation,
/// global-norm clipping, AdamW, a learning-rate schedule, periodic evaluation with best/last checkpoints, and exact
/// resume. A checkpoint is one safetensors file (written atomically) holding the trainable weights, the AdamW
/// moments, the RNG state and, in its metadata, the step, the data position and the schedule state — everything
/// an uninterrupted run would have in memory, so a resumed run ends with the same weights.
/// </summary>
public sealed class Trainer
{
    public const string LastCheckpointName = "last.safetensors";
    public const string BestCheckpointName = "best.safetensors";

    private readonly LlamaForCausalLM _model;
    private readonly List<TrainingExample> _train;
    private readonly List<TrainingExample> _validation;
    private readonly TrainingOptions _options;
    private readonly string _directory;
    private readonly List<(string Name, Parameter Parameter)> _trainable;
    private readonly ITrainingObjective _objective;

    public Trainer(LlamaForCausalLM model, List<TrainingExample> train, List<TrainingExample> validation,
        TrainingOptions options, string directory, ITrainingObjective? objective = null)
    {
        _objective = objective ?? new NextTokenObjective();
        options.Validate();
        if (train.Count == 0)
            throw new LinearizeException($"the data holds no training sequence of {options.SequenceLength} tokens; give a smaller --seq-len, or more data");
        _model = model;
        _train = train;
        _validation = validation;
        _options = options;
        _directory = directory;
        _trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();
        if (_trainable.Count == 0)
            throw new LinearizeException("the model has no trainable parameters (inject LoRA adapters first)");
    }

    public string CheckpointDirectory => Path.Combine(_directory, "checkpoints");

    public string MetricsPath => Path.Combine(_directory, "metrics.jsonl");

    /// <summary>Micro-batches per epoch and optimizer steps per epoch.</summary>
    public long StepsPerEpoch => Math.Max(1, _train.Count / (_options.BatchSize * _options.GradientAccumulation));

    public long TotalSteps => _options.MaxSteps ?? StepsPerEpoch * _options.Epochs;

    /// <summary>Runs, resuming when the run directory already holds a last checkpoint (stages of a larger job that
    /// continue where an interrupted attempt stopped).</summary>
    public TrainingResult RunOrResume(CancellationToken cancel, Action<TrainingMetrics>? onStep = null) =>
        Run(File.Exists(Path.Combine(CheckpointDirectory, LastCheckpointName)), cancel, onStep);

    /// <summary>Runs (or, with <paramref name="resume"/>, continues) training until done or <paramref name="cancel"/> fires.</summary>
    public TrainingResult Run(bool resume, CancellationToken cancel, Action<TrainingMetrics>? onStep = null)
    {
        Directory.CreateDirectory(CheckpointDirectory);
        var schedule = new LearningRateSchedule(_options.Schedule, _options.LearningRate, TotalSteps, _options.WarmupSteps);
        using var optimizer = new AdamW(_trainable, _options.LearningRate, _options.Beta1, _options.Beta2, _options.Eps, _options.WeightDecay);
        long step = 0, tokens = 0, cursor = 0; // cursor: micro-batches consumed since the start of training
        double elapsedBefore = 0, computeBefore = 0; // wall time, and time in training steps (excludes evaluation and saving)
        double? bestEval = null, lastEval = null;
        string lastPath = Path.Combine(CheckpointDirectory, LastCheckpointName);
        string bestPath = Path.Combine(CheckpointDirectory, BestCheckpointName);
        torch.manual_seed(_options.Seed);
        if (resume)
        {
            if (!File.Exists(lastPath))
                throw new LinearizeException($"{lastPath}: no checkpoint to resume from");
            var meta = LoadCheckpoint(lastPath, optimizer, schedule);
            step = meta["step"]!.GetValue<long>();
            tokens = meta["tokens"]!.GetValue<long>();
            cursor = meta["cursor"]!.GetValue<long>();
            elapsedBefore = meta["elapsed_seconds"]!.GetValue<double>();
            computeBefore = meta["compute_seconds"]!.GetValue<double>();
            bestEval = meta["best_eval_loss"]?.GetValue<double>();
            lastEval = meta["last_eval_loss"]?.GetValue<double>();
            TruncateMetrics(step);
        }
        else if (File.Exists(MetricsPath))
        {
            File.Delete(MetricsPath);
        }

        var watch = Stopwatch.StartNew();
        var compute = new Stopwatch();
        long microPerEpoch = StepsPerEpoch * _options.GradientAccumulation;
        int[]? order = null;
        long orderEpoch = -1;
        _model.train();
        while (step < TotalSteps)
        {
            if (cancel.IsCancellationRequested)
            {
                SaveCheckpoint(lastPath, optimizer, schedule, step, tokens, cursor, elapsedBefore + watch.Elapsed.TotalSeconds, computeBefore + compute.Elapsed.TotalSeconds, bestEval, lastEval);
                return new TrainingResult(false, step, tokens, computeBefore + compute.Elapsed.TotalSeconds, bestEval, lastEval,
                    File.Exists(bestPath) ? bestPath : null, lastPath);
            }

            compute.Start();
            double lossSum = 0;
            long stepTokens = 0;
            int epoch = (int)(cursor / microPerEpoch);
            for (int micro = 0; micro < _options.GradientAccumulation; micro++, cursor++)
            {
                long epochOfBatch = cursor / microPerEpoch;
                if (epochOfBatch != orderEpoch)
                {
                    order = SequencePacker.Shuffle(_train.Count, _options.Seed * 1_000_003 + (int)epochOfBatch);
                    orderEpoch = epochOfBatch;
                }

                long index = cursor % microPerEpoch;
                var batch = Enumerable.Range(0, _options.BatchSize)
                    .Select(i => _train[order![(int)((index * _options.BatchSize + i) % _train.Count)]]).ToList();
                using var scope = NewDisposeScope();
                var loss = Loss(batch);
                double value = loss.item<float>();
                if (!double.IsFinite(value))
                    throw new LinearizeException(
                        $"non-finite training loss ({value}) at step {step + 1}; stopped. The last good checkpoint is {(File.Exists(lastPath) ? lastPath : "none (no step was saved yet)")}; " +
                        "try a lower --lr or --max-grad-norm");
                loss.Over(_options.GradientAccumulation).backward();
                lossSum += value;
                stepTokens += batch.Sum(b => _objective.TrainedTokens(b));
            }

            double gradNorm = ClipGradients();
            optimizer.LearningRate = schedule.At(step);
            optimizer.Update();
            optimizer.ZeroGrad();
            step++;
            tokens += stepTokens;
            compute.Stop();
            double computeSeconds = computeBefore + compute.Elapsed.TotalSeconds;

            double? evalLoss = null;
            bool last = step == TotalSteps;
            if (step % _options.EvalEvery == 0 || last)
            {
                if (_validation.Count > 0)
                {
                    evalLoss = Evaluate();
                    lastEval = evalLoss;
                    schedule.OnEvaluation(evalLoss.Value);
                    if (bestEval is null || evalLoss < bestEval)
                    {
                        bestEval = evalLoss;
                        SaveCheckpoint(bestPath, optimizer, schedule, step, tokens, cursor, elapsedBefore + watch.Elapsed.TotalSeconds, computeSeconds, bestEval, lastEval);
                    }
                }

                SaveCheckpoint(lastPath, optimizer, schedule, step, tokens, cursor, elapsedBefore + watch.Elapsed.TotalSeconds, computeSeconds, bestEval, lastEval);
            }

            double elapsed = elapsedBefore + watch.Elapsed.TotalSeconds;
            var metrics = new TrainingMetrics(step, TotalSteps, epoch, lossSum / _options.GradientAccumulation, optimizer.LearningRate,
                gradNorm, tokens, tokens / Math.Max(computeSeconds, 1e-9), elapsed, evalLoss);
            File.AppendAllText(MetricsPath, JsonSerializer.Serialize(metrics, MetricsJson) + "\n");
            onStep?.Invoke(metrics);
        }

        _model.eval();
        return new TrainingResult(true, step, tokens, computeBefore + compute.Elapsed.TotalSeconds, bestEval, lastEval,
            File.Exists(bestPath) ? bestPath : null, lastPath);
    }

    private static readonly JsonSerializerOptions MetricsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The objective's mean loss over <paramref name="batch"/>.</summary>
    private Tensor Loss(List<TrainingExample> batch) => _objective.Loss(_model, batch);

    /// <summary>Mean validation loss (token-weighted across sequences).</summary>
    public double Evaluate()
    {
        bool wasTraining = _model.training;
        _model.eval();
        double sum = 0;
        long count = 0;
        using (no_grad())
        {
            foreach (var example in _validation)
            {
                using var scope = NewDisposeScope();
                long n = _objective.Weight(example);
                sum += Loss(new List<TrainingExample> { example }).item<float>() * n;
                count += n;
            }
        }

        if (wasTraining)
            _model.train();
        return sum / Math.Max(1, count);
    }

    /// <summary>Clips the global L2 norm of the gradients to <see cref="TrainingOptions.MaxGradNorm"/>; returns the norm before clipping.</summary>
    private double ClipGradients()
    {
        using var scope = NewDisposeScope();
        var grads = _trainable.Select(p => p.Parameter.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0)
            return 0;
        double norm = Math.Sqrt(grads.Sum(g => g.to(ScalarType.Float64).Squared().sum().item<double>()));
        if (_options.MaxGradNorm > 0 && norm > _options.MaxGradNorm)
        {
            double factor = _options.MaxGradNorm / (norm + 1e-6); // torch.nn.utils.clip_grad_norm_
            using var noGrad = no_grad();
            foreach (var g in grads)
                g.TimesInPlace(factor);

        }

        return norm;
    }

    private void SaveCheckpoint(string path, AdamW optimizer, LearningRateSchedule schedule, long step, long tokens, long cursor,
        double elapsed, double computeSeconds, double? bestEval, double? lastEval)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        tensors.AddRange(_trainable.Select(p => new KeyValuePair<string, Tensor>("param." + p.Name, p.Parameter)));
        tensors.AddRange(optimizer.StateTensors());
        using var rng = torch.get_rng_state();
        tensors.Add(new("rng", rng));
        var meta = new JsonObject
        {
            ["step"] = step,
            ["tokens"] = tokens,
            ["cursor"] = cursor,
            ["elapsed_seconds"] = elapsed,
            ["compute_seconds"] = computeSeconds,
            ["best_eval_loss"] = bestEval,
            ["last_eval_loss"] = lastEval,
            ["adam_step"] = optimizer.Step,
            ["schedule"] = schedule.SaveState(),
            ["fingerprint"] = Fingerprint(),
            ["fingerprint_parts"] = new JsonObject(FingerprintParts().Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, kv.Value))),
        };
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["training_state"] = meta.ToJsonString() });
    }

    private JsonObject LoadCheckpoint(string path, AdamW optimizer, LearningRateSchedule schedule)
    {
        using var file = SafetensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("training_state", out var json))
            throw new LinearizeException($"{path}: not a training checkpoint (no training_state metadata)");
        var meta = (JsonObject)JsonNode.Parse(json)!;
        string saved = meta["fingerprint"]!.GetValue<string>();
        if (saved != Fingerprint())
        {
            // Name what differs (checkpoints from before the parts were saved can only say that something does).
            var differing = meta["fingerprint_parts"] is JsonObject parts
                ? FingerprintParts().Where(kv => parts[kv.Key]?.GetValue<string>() != kv.Value)
                    .Select(kv => $"{kv.Key} {parts[kv.Key]?.GetValue<string>() ?? "(unset)"} → {kv.Value}").ToList()
                : new List<string>();
            string what = differing.Count > 0 ? string.Join(", ", differing) : $"fingerprint {saved}";
            throw new LinearizeException($"{path}: was written by a run with different options or data ({what}); resume with the same ones, or start a new --out");
        }
        using (no_grad())
        {
            foreach (var (name, p) in _trainable)
            {
                using var value = file.Read("param." + name);
                p.copy_(value);
            }
        }

        optimizer.LoadState(file.Read, meta["adam_step"]!.GetValue<long>());
        schedule.LoadState((JsonObject)meta["schedule"]!);
        using var rng = file.Read("rng");
        torch.set_rng_state(rng);
        return meta;
    }

    /// <summary>What must match for a resume to be exact: options, data sizes, trainable parameter names.</summary>
    private string Fingerprint() =>
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(
            string.Join("|", FingerprintParts().Select(kv => kv.Value)))))[..16];

    /// <summary>Each thing a resumed run must share, by the option or data property that sets it.</summary>
    private IReadOnlyList<KeyValuePair<string, string>> FingerprintParts()
    {
        var o = _options;
        string F(object? v) => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        return new KeyValuePair<string, string>[]
        {
            new("--rank", F(o.Lora.Rank)), new("--alpha", F(o.Lora.Alpha)), new("--lora-dropout", F(o.Lora.Dropout)),
            new("--targets", string.Join(",", o.Lora.Targets)), new("--full / --train-modules", string.Join(",", o.FullModules)), new("--lr", F(o.LearningRate)), new("adam betas", $"{F(o.Beta1)},{F(o.Beta2)}"),
            new("adam eps", F(o.Eps)), new("--weight-decay", F(o.WeightDecay)), new("--schedule", o.Schedule), new("--warmup", F(o.WarmupSteps)),
            new("--seq-len", F(o.SequenceLength)), new("--batch-size", F(o.BatchSize)), new("--grad-accum", F(o.GradientAccumulation)),
            new("--epochs", F(o.Epochs)), new("--max-steps", F(o.MaxSteps)), new("--seed", F(o.Seed)), new("--eval-every", F(o.EvalEvery)),
            new("--max-grad-norm", F(o.MaxGradNorm)), new("training sequences", F(_train.Count)), new("validation sequences", F(_validation.Count)),
            new("trainable tensors", F(_trainable.Count)), new("training data checksum", F(_train.Sum(e => (long)e.InputIds.Sum()))),
            new("objective", _objective.Fingerprint),
        };
    }

    /// <summary>Drops metric lines after <paramref name="step"/> (they belong to steps the resumed run will redo).</summary>
    private void TruncateMetrics(long step)
    {
        if (!File.Exists(MetricsPath))
            return;
        var kept = File.ReadAllLines(MetricsPath).Where(l => l.Length > 0 && JsonNode.Parse(l)!["step"]!.GetValue<long>() <= step);
        AtomicFile.WriteAllText(MetricsPath, string.Concat(kept.Select(l => l + "\n")));
    }
}
