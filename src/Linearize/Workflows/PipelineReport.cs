using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Data;

namespace Linearize.Workflows;

/// <summary>The pipeline's report: <c>report.json</c> (every stage's numbers) and <c>report.md</c> (the same as tables,
/// with how the data was cut and what was trained), written from a finished <see cref="LinearizationPipeline.Result"/>.</summary>
internal static class PipelineReport
{
    /// <summary>How the training text was cut from its file, so "trained on X, evaluated on X" cannot read as training on
    /// the test text.</summary>
    private static string DataCut(LinearizationPipeline.Options o, TrainingData.Result data)
    {
        bool plain = !Data.AlpacaDataset.IsAlpacaPath(o.DataPath);
        string split = o.Data.TextSplit.ToString().ToLowerInvariant();
        string cut = plain
            ? $"Training text: `{o.DataPath}` read as {split} (`--text-split {split}`), its first {o.Data.SkipDocuments} non-empty lines skipped (`--skip-docs`)" +
              (o.EvalTextPath is not null && o.Data.TextSplit != Data.TextDataset.Split.Paragraphs &&
               Path.GetFullPath(o.EvalTextPath) == Path.GetFullPath(o.DataPath)
                  ? o.Data.SkipDocuments >= (o.EvalDocuments ?? int.MaxValue)
                      ? $" (the evaluation reads only the first {o.EvalDocuments}, so the two do not overlap)"
                      : $" — **the evaluation's {(o.EvalDocuments is int n ? $"first {Plural.Of(n, "document")}" : "documents")} overlap the training text**"
                  : "")
            : $"Training data: Alpaca records from `{o.DataPath}`";
        // What was used, not what was asked for: --val-records is capped at 10 % of the records, and a text with too few
        // documents holds out packed sequences instead.
        string sequences = $"{Plural.Of(data.Validation.Count, "sequence")} of {o.Training.SequenceLength} tokens";
        string validation = data.Validation.Count == 0 ? "none (nothing held out)"
            : o.ValidationDataPath is not null ? $"`{o.ValidationDataPath}` ({sequences})"
            : data.HeldOutSequences ? $"{sequences} held out of the packed training text (too few documents to hold out whole ones)"
            : $"{Plural.Of(data.HeldOutRecords, data.Validation.Count > 0 && plain ? "document" : "record")} held out ({sequences})";
        return cut + $"; validation: {validation}.";
    }

    /// <summary>Writes <c>report.json</c> and <c>report.md</c> into the run's output directory (atomically).</summary>
    public static void Write(LinearizationPipeline.Options o, LinearizationPipeline.Result r)
    {
        var json = new JsonObject
        {
            ["teacher"] = o.TeacherPath,
            ["method"] = o.Linearization.Method.Name,
            ["linearization"] = o.Linearization.ToJson(),
            ["data"] = o.DataPath,
            ["text_split"] = o.Data.TextSplit.ToString().ToLowerInvariant(),
            ["skip_docs"] = o.Data.SkipDocuments,
            ["validation_data"] = o.ValidationDataPath,
            ["eval_text"] = o.EvalTextPath,
            ["eval_documents"] = o.EvalDocuments,
            ["stages"] = new JsonArray(r.Stages.Select(s => (JsonNode)new JsonObject
            {
                ["name"] = s.Name,
                ["per_line_mean_nll"] = s.PerLine?.MeanNll,
                ["per_line_ppl"] = s.PerLine?.Perplexity,
                ["per_line_tokens"] = s.PerLine?.Tokens,
                ["rolling_mean_nll"] = s.Rolling?.MeanNll,
                ["rolling_ppl"] = s.Rolling?.Perplexity,
                ["rolling_tokens"] = s.Rolling?.Tokens,
                ["tasks"] = s.Tasks is null ? null : new JsonObject(s.Tasks.SelectMany(t => t.Metrics.Select(m =>
                    new KeyValuePair<string, JsonNode?>($"{t.Task}/{m.Name}", m.Value)))),
                ["steps"] = s.Steps,
                ["trained_tokens"] = s.TrainedTokens,
                ["train_seconds"] = s.TrainSeconds,
            }).ToArray()),
            ["distill"] = o.Linearization.IsLolcats && o.Distill is { } d ? new JsonObject
            {
                ["learning_rate"] = d.LearningRate,
                ["schedule"] = d.Schedule,
                ["mse_factor"] = o.MseFactor,
                ["xent_factor"] = o.XentFactor,
                ["epochs"] = d.Epochs,
                ["max_steps"] = d.MaxSteps,
            } : null,
            ["lora"] = new JsonObject
            {
                ["rank"] = o.Training.Lora.Rank,
                ["alpha"] = o.Training.Lora.Alpha,
                ["targets"] = new JsonArray(o.Training.Lora.Targets.Select(t => (JsonNode)t).ToArray()),
                ["trainable_parameters"] = r.Lora.TrainableParameters,
                ["total_parameters"] = r.Lora.TotalParameters,
            },
            ["training"] = new JsonObject
            {
                ["steps"] = r.Training.Steps,
                ["sequences"] = r.Data.Train.Count,
                ["validation_sequences"] = r.Data.Validation.Count,
                ["labelled_tokens_trained"] = r.Training.Tokens,
                ["seconds"] = r.Training.Seconds,
                ["tokens_per_second"] = r.Training.TokensPerSecond,
                ["best_eval_loss"] = r.Training.BestEvalLoss,
                ["final_eval_loss"] = r.Training.FinalEvalLoss,
                ["learning_rate"] = o.Training.LearningRate,
                ["schedule"] = o.Training.Schedule,
                ["sequence_length"] = o.Training.SequenceLength,
                ["batch_size"] = o.Training.BatchSize,
                ["grad_accum"] = o.Training.GradientAccumulation,
                ["epochs"] = o.Training.Epochs,
                ["max_steps"] = o.Training.MaxSteps,
            },
            ["wall_seconds"] = r.WallSeconds,
            ["merged_model"] = r.MergedDirectory,
        };
        AtomicFile.WriteAllText(Path.Combine(o.OutputDirectory, "report.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

        var md = new StringBuilder();
        md.AppendLine($"# Linearization report: {o.Linearization.Method}");
        md.AppendLine();
        md.AppendLine(o.EvalTextPath is null
            ? $"Teacher `{o.TeacherPath}`, trained on `{o.DataPath}`; no evaluation text was given, so nothing was evaluated."
            : $"Teacher `{o.TeacherPath}`, trained on `{o.DataPath}`, evaluated on `{o.EvalTextPath}` ({(o.EvalDocuments is int docs ? $"first {Plural.Of(docs, "document")}" : "every document")}).");
        md.AppendLine();
        md.AppendLine(DataCut(o, r.Data));
        md.AppendLine();
        md.AppendLine("| stage | per-line NLL | per-line PPL | rolling-512 NLL | rolling-512 PPL | steps | tokens trained | training time |");
        md.AppendLine("|---|---|---|---|---|---:|---:|---:|");
        foreach (var s in r.Stages)
            md.AppendLine($"| {s.Name} | {s.PerLine?.MeanNll:F4} | {s.PerLine?.Perplexity:F3} | {s.Rolling?.MeanNll:F4} | {s.Rolling?.Perplexity:F3} | " +
                          $"{s.Steps} | {s.TrainedTokens:N0} | {(s.TrainSeconds is double sec ? $"{sec:F0} s" : "")} |");
        md.AppendLine();
        var withTasks = r.Stages.Where(s => s.Tasks is not null).ToList();
        if (withTasks.Count > 0)
        {
            md.AppendLine($"lm-eval tasks ({(o.EvalTasksLimit is int lim ? $"first {Plural.Of(lim, "document")} per task" : "full files")}" +
                          $"{(o.EvalTasksFewshot is int f ? $", {f}-shot" : ", zero-shot")}; at this model size every task but LAMBADA is near chance):");
            md.AppendLine();
            md.AppendLine("| task | metric | " + string.Join(" | ", withTasks.Select(s => s.Name)) + " |");
            md.AppendLine("|---|---|" + string.Concat(withTasks.Select(_ => "---:|")));
            foreach (var t in withTasks[0].Tasks!)
                foreach (var m in t.Metrics)
                    md.AppendLine($"| {t.Task} | {m.Name} | " + string.Join(" | ", withTasks.Select(s =>
                        s.Tasks!.First(x => x.Task == t.Task).Metric(m.Name) is { } v ? v.Value.ToString(v.Value >= 100 ? "F2" : "F4") : "")) + " |");
            md.AppendLine();
        }

        md.AppendLine($"- LoRA: rank {o.Training.Lora.Rank}, alpha {o.Training.Lora.Alpha} on {string.Join(", ", o.Training.Lora.Targets)} — " +
                      $"{r.Lora.TrainableParameters:N0} trainable of {r.Lora.TotalParameters:N0} parameters ({r.Lora.TrainableFraction:P3})");
        md.AppendLine($"- Training: {Plural.Of(r.Training.Steps, "step")} × {o.Training.BatchSize}×{Plural.Of(o.Training.GradientAccumulation, "sequence")} of {o.Training.SequenceLength}; " +
                      $"{r.Training.Tokens:N0} labelled tokens; AdamW lr {o.Training.LearningRate} ({o.Training.Schedule}); " +
                      $"{r.Training.Seconds:F1} s in training steps, {r.Training.TokensPerSecond:F0} labelled tokens/s");
        md.AppendLine($"- Validation loss: best {r.Training.BestEvalLoss:F4}, final {r.Training.FinalEvalLoss:F4}");
        md.AppendLine($"- Wall time: {r.WallSeconds:F1} s. Merged model: `{r.MergedDirectory}`. Loss curve: `train/loss.png`.");
        AtomicFile.WriteAllText(Path.Combine(o.OutputDirectory, "report.md"), md.ToString());
    }
}
