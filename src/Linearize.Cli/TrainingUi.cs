using System.Text.Json.Nodes;
using Linearize.Training;
using Spectre.Console;

namespace Linearize.Cli;

/// <summary>Progress display and the loss-curve plot for training commands (stopping them: <see cref="Interruption"/>).</summary>
public static class TrainingUi
{
    /// <summary>Runs <paramref name="run"/> with a progress bar (step, loss, lr, tokens/s, ETA) or plain log lines.</summary>
    public static T WithTrainingProgress<T>(long totalSteps, Func<Action<TrainingMetrics>, T> run)
    {
        if (!ConsoleUi.Interactive)
        {
            return run(m =>
            {
                if (m.Step % 10 == 0 || m.Step == m.TotalSteps || m.EvalLoss is not null)
                    Console.Error.WriteLine($"step {m.Step}/{m.TotalSteps} loss {m.Loss:F4} lr {m.LearningRate:G3} |g| {m.GradNorm:F3} " +
                                            $"{m.TokensPerSecond:F0} tok/s{(m.EvalLoss is double e ? $" eval {e:F4}" : "")}");
            });
        }

        T result = default!;
        ConsoleUi.Err.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: Math.Max(1, totalSteps));
                double? lastEval = null;
                result = run(m =>
                {
                    lastEval = m.EvalLoss ?? lastEval;
                    task.MaxValue = m.TotalSteps;
                    task.Value = m.Step;
                    task.Description = Markup.Escape($"step {m.Step}/{m.TotalSteps} loss {m.Loss:F4} lr {m.LearningRate:G3} " +
                                                     $"{m.TokensPerSecond:F0} tok/s{(lastEval is double e ? $" eval {e:F4}" : "")}");
                });
            });
        return result;
    }

    /// <summary>Writes <c>loss.png</c> (train loss per step, eval loss where measured) from <c>metrics.jsonl</c>.</summary>
    public static void PlotLoss(string metricsPath, string pngPath, string title = "training loss", string yLabel = "cross-entropy (nats/token)")
    {
        if (!File.Exists(metricsPath))
            return;
        var rows = File.ReadAllLines(metricsPath).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!).ToList();
        if (rows.Count == 0)
            return;
        var steps = rows.Select(r => (double)r["step"]!.GetValue<long>()).ToArray();
        var loss = rows.Select(r => r["loss"]!.GetValue<double>()).ToArray();
        var evals = rows.Where(r => r["eval_loss"] is not null).ToList();
        var series = new List<Plots.Series> { new("train loss", steps, loss) };
        if (evals.Count > 0)
            series.Add(new("validation loss", evals.Select(r => (double)r["step"]!.GetValue<long>()).ToArray(),
                evals.Select(r => r["eval_loss"]!.GetValue<double>()).ToArray(), Markers: true));
        Plots.Line(pngPath, title, "optimizer step", yLabel, series, integerX: true);
    }
}
