using System.CommandLine;
using Linearize.LinearAttention;
using Linearize.Training;
using Linearize.Workflows;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize pipeline</c>: convert → train → merge → evaluate → report, in one command.</summary>
public static class PipelineCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var conversion = new ConversionCliOptions(methodRequired: false);
        // Required: the report's point is teacher vs converted vs trained; without it the pipeline reported an empty table.
        var evalText = new Option<string?>("--eval-text") { Description = "Text to measure perplexity on (teacher, converted, trained)", Required = true };
        var evalDocs = new Option<int?>("--eval-docs") { Description = "Evaluation documents (per-line: first N lines; rolling: the text up to the N-th)", DefaultValueFactory = _ => 200 };
        var training = new TrainingCliOptions();
        var overwrite = OutputDirectory.OverwriteOption();
        var output = new Option<string>("--out", "-o") { Description = "Output directory (converted/, train/, merged/, report.md, report.json)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted pipeline's training" };
        var distillLr = new Option<double>("--distill-lr") { Description = "lolcats-*: attention-transfer learning rate (reference: 1e-2)", DefaultValueFactory = _ => 1e-2 };
        var distillSteps = new Option<long?>("--distill-steps") { Description = "lolcats-*: attention-transfer steps (default: as many as LoRA training)" };
        var mse = new Option<double>("--mse-factor") { Description = "lolcats-*: weight of the attention-output MSE (reference: 1000)", DefaultValueFactory = _ => 1000 };
        var xent = new Option<double>("--xent-factor") { Description = "lolcats-*: weight of the attention-row cross-entropy (reference: 0)", DefaultValueFactory = _ => 0 };
        var evalTasks = new Option<string?>("--eval-tasks") { Description = "Also run these lm-eval tasks (e.g. piqa,arc_easy,lambada_openai) on every stage and add them to the report" };
        var evalTasksLimit = new Option<int?>("--eval-tasks-limit") { Description = "--eval-tasks: first N documents per task (mmlu: per subject)" };
        var evalTasksFewshot = new Option<int?>("--eval-tasks-fewshot") { Description = "--eval-tasks: shots (mmlu only)" };
        var noDistill = new Option<bool>("--no-distill") { Description = "lolcats-*: skip attention transfer (LoRA on the identity feature maps)" };
        var command = new Command("pipeline",
            "Teacher → converted → (lolcats-*: attention transfer →) LoRA-trained → merged linear model, evaluating every stage on the same text under both " +
            "perplexity protocols; writes report.md and report.json. For lolcats-* the LoRA defaults become the LoLCATs recipe (r 8, alpha 16 on q,k,v,o, " +
            "lr 1e-4, no weight decay, plateau) unless given. " + ConversionCliOptions.MethodList);
        model.AddTo(command);
        conversion.AddTo(command);
        foreach (var o in new Option[] { evalText, evalDocs, output, resume, overwrite, distillLr, distillSteps, mse, xent, noDistill, evalTasks, evalTasksLimit, evalTasksFewshot })
            command.Add(o);
        training.AddTo(command);
        command.SetAction(r => CliRunner.Run(() =>
        {
            training.ApplyThreads(r);
            string outDir = r.GetValue(output)!;
            conversion.Validate(r);
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: r.GetValue(resume), r.GetValue(model.Model), r.GetValue(model.Tokenizer),
                r.GetValue(evalText), r.GetValue(training.Data));
            if (r.GetValue(evalText) is string t && !File.Exists(t))
                throw new LinearizeException($"{t}: evaluation text not found");
            int layers = Linearize.Modeling.ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer)).LoadConfig().NumHiddenLayers;
            var lin = conversion.Build(r, layers);
            var trainingOptions = training.Training(r);
            TrainingOptions? distill = null;
            if (lin.IsLolcats)
            {
                // Stage 2 of LoLCATs (the LoLCATs paper's recipe): LoRA r 8, alpha 16 on q,k,v,o, lr 1e-4, wd 0, plateau — unless given.
                bool Given(Option o) => r.GetResult(o) is { Implicit: false };
                trainingOptions = trainingOptions with
                {
                    Lora = trainingOptions.Lora with
                    {
                        Alpha = Given(training.Alpha) ? trainingOptions.Lora.Alpha : 16,
                        Targets = Given(training.Targets) ? trainingOptions.Lora.Targets : Linearize.Training.Lora.LoraOptions.ParseTargets("q,k,v,o"),
                    },
                    LearningRate = Given(training.Lr) ? trainingOptions.LearningRate : 1e-4,
                    WeightDecay = Given(training.WeightDecay) ? trainingOptions.WeightDecay : 0,
                    Schedule = Given(training.Schedule) ? trainingOptions.Schedule : "plateau",
                };
                if (!r.GetValue(noDistill))
                    distill = Linearize.Workflows.AttentionTransferRun.Recipe with
                    {
                        LearningRate = r.GetValue(distillLr),
                        SequenceLength = trainingOptions.SequenceLength,
                        BatchSize = trainingOptions.BatchSize,
                        GradientAccumulation = trainingOptions.GradientAccumulation,
                        Epochs = trainingOptions.Epochs,
                        MaxSteps = r.GetValue(distillSteps) ?? trainingOptions.MaxSteps,
                        EvalEvery = trainingOptions.EvalEvery,
                        Seed = trainingOptions.Seed,
                    };
            }
            else if (new Option[] { distillLr, distillSteps, mse, xent, noDistill }.FirstOrDefault(o => r.GetResult(o) is { Implicit: false }) is { } stray)
            {
                throw new LinearizeException($"{stray.Name} applies to lolcats-* methods, not {lin.Method}");
            }
            var options = new LinearizationPipeline.Options
            {
                TeacherPath = r.GetValue(model.Model)!,
                TokenizerPath = r.GetValue(model.Tokenizer),
                Linearization = lin,
                DataPath = r.GetValue(training.Data)!,
                ValidationDataPath = r.GetValue(training.ValData),
                Data = training.DataOptions(r),
                Training = trainingOptions,
                Distill = distill,
                EvalTasks = r.GetValue(evalTasks) is string tl ? Linearize.Evaluation.Tasks.TaskRegistry.Parse(tl).Select(t => t.Name).ToList() : Array.Empty<string>(),
                EvalTasksDataDirectory = EvalTasksCommand.DefaultDataDirectory(),
                EvalTasksLimit = r.GetValue(evalTasksLimit),
                EvalTasksFewshot = r.GetValue(evalTasksFewshot),
                MseFactor = r.GetValue(mse),
                XentFactor = r.GetValue(xent),
                EvalTextPath = r.GetValue(evalText),
                EvalDocuments = r.GetValue(evalDocs),
                OutputDirectory = outDir,
                Resume = r.GetValue(resume),
            };
            options.Training.Validate();
            using var interruption = Interruption.Listen();
            var pipeline = new LinearizationPipeline(options);
            var result = TrainingUi.WithTrainingProgress(0, onStep => pipeline.Run(interruption.Token, msg => Console.Error.WriteLine("• " + msg), onStep));
            string trainDir = Path.Combine(outDir, "train");
            TrainingUi.PlotLoss(Path.Combine(trainDir, "metrics.jsonl"), Path.Combine(trainDir, "loss.png"));
            string distillDir = Path.Combine(outDir, "distill");
            TrainingUi.PlotLoss(Path.Combine(distillDir, "metrics.jsonl"), Path.Combine(distillDir, "loss.png"), "attention transfer", "1000 × MSE");
            if (!result.Training.Completed)
            {
                Console.Error.WriteLine($"interrupted at step {result.Training.Steps}; continue with the same command plus --resume");
                return interruption.ExitCode;
            }

            var table = new Table().AddColumn("stage").AddColumn(new TableColumn("per-line NLL").RightAligned())
                .AddColumn(new TableColumn("per-line PPL").RightAligned()).AddColumn(new TableColumn("rolling NLL").RightAligned())
                .AddColumn(new TableColumn("rolling PPL").RightAligned());
            foreach (var s in result.Stages)
                table.AddRow(s.Name, $"{s.PerLine?.MeanNll:F4}", $"{s.PerLine?.Perplexity:F3}", $"{s.Rolling?.MeanNll:F4}", $"{s.Rolling?.Perplexity:F3}");
            ConsoleUi.Out.Write(table);
            Console.Out.WriteLine($"{Plural.Of(result.Training.Steps, "step")}, {result.Training.Tokens:N0} labelled tokens at {result.Training.TokensPerSecond:F0} tokens/s; " +
                                  $"wall {result.WallSeconds:F0} s; report {result.ReportPath}; model {result.MergedDirectory}");
            return 0;
        }));
        return command;
    }
}
