using System.CommandLine;
using System.Text.Json;
using Linearize.Data;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Training;
using Linearize.Training.Lora;
using Linearize.Workflows;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize train</c>: LoRA fine-tuning with exact resume.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var training = new TrainingCliOptions();
        var output = new Option<string>("--out", "-o") { Description = "Run directory: checkpoints/, metrics.jsonl, loss.png, adapter/", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --out from its last checkpoint (same options and data)" };
        var full = new Option<bool>("--full") { Description = "Train every parameter, no LoRA (training from scratch, full fine-tuning); the result is --out/model" };
        var overwrite = OutputDirectory.OverwriteOption();
        var trainModules = new Option<string?>("--train-modules") { Description = "Also train these parameters in full beside LoRA, by name fragment (e.g. embed_tokens,lm_head); the merged result is --out/model" };
        var checkpointActivations = new Option<bool>("--checkpoint-activations")
        {
            Description = "Keep only each layer's input during the forward pass and recompute the layer in the backward pass: " +
                          "activation memory of one layer instead of all, for about one more forward pass of time (not with --lora-dropout)",
        };
        var command = new Command("train",
            "Fine-tune LoRA adapters on next-token prediction (Liger's recovery recipe by default), or every parameter (--full), or LoRA plus chosen modules in full (--train-modules). " +
            "Data: plain text, Alpaca JSON/JSONL, or pre-tokenized JSONL (input_ids, labels; e.g. from 'data recall'). Ctrl-C saves a checkpoint; --resume continues exactly.");
        model.AddTo(command);
        training.AddTo(command);
        command.Add(output);
        command.Add(resume);
        command.Add(overwrite);
        command.Add(full);
        command.Add(trainModules);
        command.Add(checkpointActivations);
        command.SetAction(r => CliRunner.Run(() =>
        {
            training.ApplyThreads(r);
            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir))
                throw new LinearizeException($"{outDir}: exists and is a file; --out must be a directory");
            bool isResume = r.GetValue(resume);
            // The more helpful message first: a finished or interrupted run is most likely meant to be resumed.
            if (!isResume && !r.GetValue(overwrite) && File.Exists(Path.Combine(outDir, "checkpoints", Trainer.LastCheckpointName)))
                throw new LinearizeException($"{outDir}: already holds a training run; pass --resume to continue it, or choose another --out");
            // A resume continues the run already in --out, so only there may a non-empty --out be reused as it is.
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: isResume,
                r.GetValue(model.Model), r.GetValue(model.Tokenizer), r.GetValue(training.Data), r.GetValue(training.ValData));
            bool fullOnly = r.GetValue(full);
            string? modules = r.GetValue(trainModules);
            if (fullOnly && modules is not null)
                throw new LinearizeException("--full trains every parameter already; drop --train-modules");
            var fragments = fullOnly ? new[] { "*" } : modules?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? Array.Empty<string>();
            var options = training.Training(r) with { FullModules = fragments };
            options.Validate();
            if (r.GetValue(checkpointActivations) && options.Lora.Dropout > 0)
                throw new LinearizeException("--checkpoint-activations recomputes each layer, which would draw new dropout masks: drop --lora-dropout or the flag");
            string dataPath = r.GetValue(training.Data)!;
            var (llama, tokenizer, source) = ModelLoader.LoadWithTokenizer(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer), model.ParseDType(r),
                idTokenizerFallback: TokenFile.IsTokenFile(dataPath));
            using var _m = llama;
            llama.Model.CheckpointActivations = r.GetValue(checkpointActivations);
            var data = TrainingData.Prepare(dataPath, r.GetValue(training.ValData), tokenizer, training.DataOptions(r));
            var report = fullOnly ? null : LoraInjector.Inject(llama, options.Lora, (ulong)options.Seed);
            var unfrozen = FullTraining.Unfreeze(llama, fragments);
            Console.Error.WriteLine($"data: {Plural.Of(data.Records, "record")}{(data.SkippedRecords > 0 ? $" ({data.SkippedRecords} malformed, skipped)" : "")} → " +
                                    $"{data.Train.Count} training / {data.Validation.Count} validation sequences of {options.SequenceLength} tokens");
            if (report is not null)
                Console.Error.WriteLine($"LoRA: {Plural.Of(report.Modules, "module")}, {report.TrainableParameters:N0} trainable of {report.TotalParameters:N0} parameters ({report.TrainableFraction:P3})");
            if (unfrozen.Tensors > 0)
                Console.Error.WriteLine($"full training: {Plural.Of(unfrozen.Tensors, "tensor")}, {unfrozen.Values:N0} parameters{(fullOnly ? " (all)" : $" matching {string.Join(", ", fragments)}")}");
            // Everything that can refuse the run does so before --out is touched (a refused run leaves no half-made directory).
            var trainer = new Trainer(llama, data.Train, data.Validation, options, outDir);
            Directory.CreateDirectory(outDir);
            Linearize.Checkpoints.AtomicFile.WriteAllText(Path.Combine(outDir, "train_config.json"), JsonSerializer.Serialize(new
            {
                model = r.GetValue(model.Model), data = r.GetValue(training.Data), val_data = r.GetValue(training.ValData),
                text_split = r.GetValue(training.TextSplit), skip_docs = r.GetValue(training.SkipDocs), options,
            }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));

            using var interruption = Interruption.Listen();
            var result = TrainingUi.WithTrainingProgress(trainer.TotalSteps, onStep => trainer.Run(isResume, interruption.Token, onStep));
            TrainingUi.PlotLoss(trainer.MetricsPath, Path.Combine(outDir, "loss.png"));
            if (!result.Completed)
            {
                Console.Error.WriteLine($"interrupted at step {result.Steps}; checkpoint {result.LastCheckpoint}; continue with --resume");
                return interruption.ExitCode;
            }

            string adapterFrom = result.BestCheckpoint ?? result.LastCheckpoint;
            LinearizationPipeline.RestoreTrainable(llama, adapterFrom);
            string written;
            if (!fullOnly)
                LoraAdapterFile.Save(llama, options.Lora, Path.Combine(outDir, "adapter"), source.Path);
            if (fragments.Length > 0)
            {
                // Weights trained in full are not in an adapter: the whole model is the result (LoRA merged into it).
                if (!fullOnly)
                    LoraInjector.Merge(llama);
                ModelLoader.SaveHuggingFace(llama, llama.Config, Path.Combine(outDir, "model"), source.TokenizerPath);
                written = $"model in {Path.Combine(outDir, "model")}{(fullOnly ? "" : $" (LoRA merged; adapter in {Path.Combine(outDir, "adapter")})")}";
            }
            else
                written = $"adapter in {Path.Combine(outDir, "adapter")}";
            Console.Out.WriteLine($"done: {Plural.Of(result.Steps, "step")}, {result.Tokens:N0} labelled tokens, {result.TokensPerSecond:F0} tokens/s; " +
                                    $"validation loss best {result.BestEvalLoss:F4} final {result.FinalEvalLoss:F4}; {Path.GetFileNameWithoutExtension(adapterFrom)} {written}; " +
                                    $"peak memory {System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1e9:F2} GB");
            return 0;
        }));
        return command;
    }
}
