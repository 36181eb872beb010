using System.CommandLine;
using System.Text.Json;
using Linearize.Modeling;
using Linearize.Training;
using Linearize.Training.Data;
using Linearize.Training.Lora;

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
        var command = new Command("train",
            "Fine-tune LoRA adapters on next-token prediction (Liger's recovery recipe by default). Ctrl-C saves a checkpoint; --resume continues exactly.");
        model.AddTo(command);
        training.AddTo(command);
        command.Add(output);
        command.Add(resume);
        command.SetAction(r => CliRunner.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir))
                throw new LinearizeException($"{outDir}: exists and is a file; --out must be a directory");
            bool isResume = r.GetValue(resume);
            if (!isResume && File.Exists(Path.Combine(outDir, "checkpoints", Trainer.LastCheckpointName)))
                throw new LinearizeException($"{outDir}: already holds a training run; pass --resume to continue it, or choose another --out");
            var options = training.Training(r);
            options.Validate();
            var (llama, tokenizer, source) = ModelLoader.LoadWithTokenizer(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer), model.ParseDType(r));
            using var _m = llama;
            var data = TrainingData.Prepare(r.GetValue(training.Data)!, r.GetValue(training.ValData), tokenizer, training.DataOptions(r));
            var report = LoraInjector.Inject(llama, options.Lora, (ulong)options.Seed);
            Console.Error.WriteLine($"data: {data.Records} records{(data.SkippedRecords > 0 ? $" ({data.SkippedRecords} malformed, skipped)" : "")} → " +
                                    $"{data.Train.Count} training / {data.Validation.Count} validation sequences of {options.SequenceLength} tokens");
            Console.Error.WriteLine($"LoRA: {report.Modules} modules, {report.TrainableParameters:N0} trainable of {report.TotalParameters:N0} parameters ({report.TrainableFraction:P3})");
            // Everything that can refuse the run does so before --out is touched (issue 9 item 13).
            var trainer = new Trainer(llama, data.Train, data.Validation, options, outDir);
            Directory.CreateDirectory(outDir);
            Linearize.Checkpoints.AtomicFile.WriteAllText(Path.Combine(outDir, "train_config.json"), JsonSerializer.Serialize(new
            {
                model = r.GetValue(model.Model), data = r.GetValue(training.Data), val_data = r.GetValue(training.ValData),
                text_split = r.GetValue(training.TextSplit), skip_docs = r.GetValue(training.SkipDocs), options,
            }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));

            using var cts = TrainingUi.CancelOnCtrlC();
            var result = TrainingUi.WithTrainingProgress(trainer.TotalSteps, onStep => trainer.Run(isResume, cts.Token, onStep));
            TrainingUi.PlotLoss(trainer.MetricsPath, Path.Combine(outDir, "loss.png"));
            if (!result.Completed)
            {
                Console.Error.WriteLine($"interrupted at step {result.Steps}; checkpoint {result.LastCheckpoint}; continue with --resume");
                return 130;
            }

            string adapterFrom = result.BestCheckpoint ?? result.LastCheckpoint;
            LinearizationPipeline.RestoreTrainable(llama, adapterFrom);
            LoraAdapterFile.Save(llama, options.Lora, Path.Combine(outDir, "adapter"), source.Path);
            Console.Error.WriteLine($"done: {result.Steps} steps, {result.Tokens:N0} labelled tokens, {result.TokensPerSecond:F0} tokens/s; " +
                                    $"validation loss best {result.BestEvalLoss:F4} final {result.FinalEvalLoss:F4}; adapter ({Path.GetFileNameWithoutExtension(adapterFrom)}) in {Path.Combine(outDir, "adapter")}");
            return 0;
        }));
        return command;
    }
}
