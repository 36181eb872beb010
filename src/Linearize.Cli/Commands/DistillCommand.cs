using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Linearize.Training;
using Linearize.Training.Distillation;
using Linearize.Workflows;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize distill</c>: LoLCATs stage 1, attention transfer, joint or block-wise (also for the projections a
/// Liger conversion adds: <c>g_proj</c>, <c>b_proj</c>).</summary>
public static class DistillCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var training = new TrainingCliOptions(AttentionTransferRun.Recipe);
        var mse = new Option<double>("--mse-factor") { Description = "Weight of the output MSE (reference: 1000)", DefaultValueFactory = _ => AttentionTransferObjective.DefaultMseFactor };
        var xent = new Option<double>("--xent-factor") { Description = "Weight of the attention-row cross-entropy (reference: 0 up to 8B, 1 for 70B/405B; quadratic in --seq-len)", DefaultValueFactory = _ => 0 };
        var blockSize = new Option<int?>("--block-size") { Description = "Block-wise transfer: layers per block, each trained alone from the residual stream saved at its input" };
        var block = new Option<int?>("--block") { Description = "Block-wise: train only block I (after --prepare; for a Slurm array or Kubernetes Indexed Job)" };
        var prepare = new Option<bool>("--prepare") { Description = "Block-wise: only save the block inputs (blocks/inputs/), then stop" };
        var gather = new Option<bool>("--gather") { Description = "Block-wise: only assemble model/ from the trained blocks" };
        var jobs = new Option<int>("--jobs") { Description = "Block-wise: train the blocks in N local processes at once", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out", "-o") { Description = "Run directory: checkpoints/, metrics.jsonl, loss.png (or blocks/), and model/ — the converted model with the learned feature maps", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out (same options and data)" };
        var overwrite = OutputDirectory.OverwriteOption();
        var json = new Option<bool>("--json") { Description = "Print the result as JSON on stdout" };
        var command = new Command("distill",
            "LoLCATs stage 1, attention transfer: train only the parameters a conversion added (the feature maps and window factors of a " +
            "lolcats-sw/lolcats-tk model; g_proj of --gate learned and b_proj of liger-gdn/liger-deltanet) so each layer's " +
            "hybrid attention imitates the teacher's softmax attention (every layer sees the teacher's hidden states, so layers train independently). " +
            "Reference recipe by default: AdamW lr 1e-2, no weight decay, reduce-on-plateau, MSE × 1000. Writes --out/model; recover next with 'linearize train'.");
        command.Add(model.Model);
        command.Add(model.Tokenizer);
        training.AddTo(command);
        foreach (var o in new Option[] { mse, xent, blockSize, block, prepare, gather, jobs, output, resume, overwrite, json })
            command.Add(o);
        command.SetAction(r => CliRunner.Run(() =>
        {
            training.ApplyThreads(r);
            string outDir = r.GetValue(output)!;
            int? k = r.GetValue(blockSize);
            bool onlyPrepare = r.GetValue(prepare), onlyGather = r.GetValue(gather);
            int? onlyBlock = r.GetValue(block);
            if (k is null && (onlyPrepare || onlyGather || onlyBlock is not null || r.GetResult(jobs) is { Implicit: false }))
                throw new LinearizeException("--prepare, --block, --gather and --jobs apply to block-wise transfer: add --block-size K");
            if ((onlyPrepare ? 1 : 0) + (onlyGather ? 1 : 0) + (onlyBlock is null ? 0 : 1) > 1)
                throw new LinearizeException("give at most one of --prepare, --block, --gather");
            if (r.GetValue(jobs) < 1)
                throw new LinearizeException($"--jobs must be at least 1, got {r.GetValue(jobs)}");
            bool partOfARun = onlyBlock is not null || onlyGather; // works inside a directory --prepare made
            OutputDirectory.Prepare(outDir, r.GetValue(overwrite), reuse: r.GetValue(resume) || partOfARun,
                r.GetValue(model.Model), r.GetValue(model.Tokenizer), r.GetValue(training.Data), r.GetValue(training.ValData));
            var run = new AttentionTransferRun(new AttentionTransferRun.Options
            {
                ModelPath = r.GetValue(model.Model)!,
                TokenizerPath = r.GetValue(model.Tokenizer),
                DataPath = r.GetValue(training.Data)!,
                ValidationDataPath = r.GetValue(training.ValData),
                Data = training.DataOptions(r),
                Training = training.Training(r),
                MseFactor = r.GetValue(mse),
                XentFactor = r.GetValue(xent),
                OutputDirectory = outDir,
                Resume = r.GetValue(resume),
                BlockSize = k,
            });
            // A run that fails before it writes anything (empty data, a bad model) leaves no --out behind it.
            bool created = !Directory.Exists(outDir);
            Directory.CreateDirectory(outDir);
            try
            {
                return Distill();
            }
            catch when (created && !Directory.EnumerateFiles(outDir, "*", SearchOption.AllDirectories).Any())
            {
                Directory.Delete(outDir, recursive: true);
                throw;
            }

            int Distill()
            {
                var log = (string m) => Console.Error.WriteLine("• " + m);
                using var interruption = Interruption.Listen();

                if (k is null)
                {
                    var result = TrainingUi.WithTrainingProgress(0, onStep => run.Run(interruption.Token, log, onStep));
                    TrainingUi.PlotLoss(Path.Combine(outDir, "metrics.jsonl"), Path.Combine(outDir, "loss.png"), "attention transfer", "1000 × MSE");
                    return Report(result.Training, result.ModelDirectory, result.WallSeconds, r.GetValue(json), interruption);
                }

                if (onlyPrepare)
                {
                    int blocks = run.PrepareBlocks(log, cancel: interruption.Token);
                    Console.Error.WriteLine($"saved the inputs of {Plural.Of(blocks, "block")} in {Path.Combine(run.BlocksDirectory, "inputs")}; " +
                                            $"now run --block 0 … --block {blocks - 1} (any order, any machine sharing {outDir}), then --gather");
                    return 0;
                }

                if (onlyBlock is int i)
                {
                    var result = TrainingUi.WithTrainingProgress(0, onStep => run.RunBlock(i, interruption.Token, log, onStep));
                    TrainingUi.PlotLoss(Path.Combine(run.BlockDirectory(i), "metrics.jsonl"), Path.Combine(run.BlockDirectory(i), "loss.png"), $"attention transfer, block {i}", "1000 × MSE");
                    return Report(result.Training, null, result.WallSeconds, r.GetValue(json), interruption);
                }

                if (onlyGather)
                {
                    string dir = run.Gather(log);
                    Console.Error.WriteLine($"wrote {dir}");
                    return 0;
                }

                // The whole block-wise run: prepare (unless already done), every block, gather.
                var watch = Stopwatch.StartNew();
                var modelConfig = Linearize.Modeling.ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer)).LoadConfig();
                int count = run.BlockCount(modelConfig.NumHiddenLayers);
                if (!Enumerable.Range(0, count).All(b => File.Exists(run.BoundaryPath(b))))
                    run.PrepareBlocks(log, cancel: interruption.Token);
                var pending = Enumerable.Range(0, count).Where(b => !run.BlockDone(b)).ToList();
                if (r.GetValue(jobs) > 1)
                {
                    int failed = BlockProcesses.Run(r.Tokens.Select(t => t.Value).ToList(), pending, r.GetValue(jobs), run, log, interruption);
                    if (interruption.Requested)
                    {
                        Console.Error.WriteLine("interrupted; each block that started kept its last checkpoint; continue with the same command plus --resume");
                        return interruption.ExitCode;
                    }

                    if (failed > 0)
                        throw new LinearizeException($"{failed} block process(es) failed; see {run.BlocksDirectory}/block-*/log.txt, then rerun with --resume");
                }
                else
                {
                    foreach (int b in pending)
                    {
                        var result = TrainingUi.WithTrainingProgress(0, onStep => run.RunBlock(b, interruption.Token, log, onStep));
                        if (!result.Training.Completed)
                        {
                            Console.Error.WriteLine($"interrupted in block {b}; continue with the same command plus --resume");
                            return interruption.ExitCode;
                        }
                    }
                }

                string gathered = run.Gather(log);
                Console.Error.WriteLine($"block-wise attention transfer done in {watch.Elapsed.TotalSeconds:F0} s: {gathered}");
                if (r.GetValue(json))
                    Console.Out.WriteLine(JsonSerializer.Serialize(new { model = gathered, blocks = count, seconds = watch.Elapsed.TotalSeconds }));
                return 0;
            }
        }));
        return command;
    }

    private static int Report(TrainingResult result, string? modelDir, double wall, bool json, Interruption interruption)
    {
        if (!result.Completed)
        {
            Console.Error.WriteLine($"interrupted at step {result.Steps}; checkpoint {result.LastCheckpoint}; continue with --resume");
            return interruption.ExitCode;
        }

        if (json)
            Console.Out.WriteLine(JsonSerializer.Serialize(new
            {
                model = modelDir, steps = result.Steps, tokens = result.Tokens, tokens_per_second = result.TokensPerSecond,
                best_eval_loss = result.BestEvalLoss, final_eval_loss = result.FinalEvalLoss, seconds = wall,
            }));
        // The result line goes to stdout, unless --json already put the result there.
        (json ? Console.Error : Console.Out).WriteLine($"done: {Plural.Of(result.Steps, "step")}, {result.Tokens:N0} tokens at {result.TokensPerSecond:F0} tokens/s; " +
                                $"validation loss best {result.BestEvalLoss:F4} final {result.FinalEvalLoss:F4}" +
                                (modelDir is null ? "" : $"; model {modelDir}"));
        return 0;
    }
}
