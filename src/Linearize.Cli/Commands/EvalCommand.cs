using System.CommandLine;
using System.Text.Json;
using Linearize.Evaluation;
using Linearize.Methods;
using Linearize.Modeling;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize eval …</c>: evaluation commands.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var command = new Command("eval", "Evaluate a model.");
        command.Add(CreatePerplexity());
        command.Add(EvalTasksCommand.Create());
        command.Add(EvalRecallCommand.Create());
        command.Add(EvalPasskeyCommand.Create());
        return command;
    }

    private static Command CreatePerplexity()
    {
        var model = new ModelOptions();
        var text = new Option<string>("--text") { Description = "Plain-text file to score", Required = true };
        var maxDocs = new Option<int?>("--max-docs") { Description = "Per-line: score the first N non-empty lines. Rolling: use the file up to and including its N-th non-empty line" };
        var rolling = new Option<bool>("--rolling") { Description = "Long-context protocol: encode the text once and score it in windows of --max-length tokens" };
        var maxLength = new Option<int>("--max-length") { Description = "Tokens per document (per-line: truncation) or per window (rolling)", DefaultValueFactory = _ => 512 };
        var stride = new Option<int?>("--stride") { Description = "Rolling only: advance windows by S < max-length tokens, re-reading the rest as context (default: max-length, disjoint windows)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table" };
        var weightDType = new Option<string>("--weight-dtype")
        {
            Description = "Score with every weight matrix rounded as the decode engine stores it (bfloat16 or q8) and each projection's input " +
                          "rounded as the engine rounds it (to bfloat16, unless --float32-activations; to Q8 blocks), computing in float32: " +
                          "the format's perplexity cost",
            DefaultValueFactory = _ => "float32",
        };
        weightDType.AcceptOnlyFromAmong("float32", "bfloat16", "q8");
        var float32Activations = new Option<bool>("--float32-activations")
        {
            Description = "With --weight-dtype bfloat16: keep each projection's input in float32, as the engine's --float32-activations does " +
                          "(by default it is rounded to bfloat16 too, as the engine multiplies bfloat16 weights)",
        };
        var bf16Products = new Option<bool>("--bf16-products")
        {
            Description = "The default with --weight-dtype bfloat16; kept so older commands run",
            Hidden = true,
        };

        var command = new Command("ppl",
            "Perplexity. Default protocol: each non-empty line is a document (BOS + line, truncated to --max-length), " +
            "every token after BOS scored. --rolling: the text as one document, scored in --max-length windows.");
        model.AddTo(command);
        command.Add(text);
        command.Add(maxDocs);
        command.Add(rolling);
        command.Add(maxLength);
        command.Add(stride);
        command.Add(json);
        command.Add(weightDType);
        command.Add(float32Activations);
        command.Add(bf16Products);
        command.SetAction(r => CliRunner.Run(() =>
        {
            int? docs = r.GetValue(maxDocs);
            if (docs is < 1)
                throw new LinearizeException($"--max-docs must be at least 1, got {docs}");
            if (r.GetValue(stride) is not null && !r.GetValue(rolling))
                throw new LinearizeException("--stride only applies with --rolling");
            string path = r.GetValue(text)!;
            if (!File.Exists(path))
                throw new LinearizeException($"{path}: text file not found");

            var (llama, tokenizer, source) = ModelLoader.LoadWithTokenizer(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer), model.ParseDType(r));
            using var _m = llama;
            ContextLimit.Check(llama.Config, r.GetValue(maxLength), "--max-length");
            var format = Linearize.Inference.EngineOptions.ParseFormat(r.GetValue(weightDType)!);
            if (format != Linearize.Inference.WeightFormat.Float32 && model.ParseDType(r) != TorchSharp.torch.ScalarType.Float32)
                throw new LinearizeException("--weight-dtype rounds float32 weights; drop --dtype bfloat16");
            bool products = EngineCliOptions.Products(r, format == Linearize.Inference.WeightFormat.BFloat16, float32Activations, bf16Products);
            Linearize.Inference.WeightRounding.Apply(llama, format);
            using var _rounding = Linearize.Inference.ActivationRounding.Apply(llama, format, products);
            var evaluator = new PerplexityEvaluator(llama, tokenizer, r.GetValue(maxLength));
            if (File.Exists(path) && PerplexityEvaluator.FirstInvalidUtf8(path) is long bad)
                Console.Error.WriteLine($"warning: {path} is not valid UTF-8 (first bad byte at offset {bad}); such bytes are read as U+FFFD and scored — is this a text file?");
            Linearize.Evaluation.PerplexityResult result;
            try
            {
                result = r.GetValue(rolling)
                    ? ConsoleUi.WithProgress("rolling windows", p => evaluator.Rolling(PerplexityEvaluator.ReadPrefix(path, docs), r.GetValue(stride), p))
                    : ConsoleUi.WithProgress("documents", p => evaluator.PerLine(PerplexityEvaluator.ReadLines(path, docs), p));
            }
            catch (LinearizeException e) when (e.Message.StartsWith("no tokens to score", StringComparison.Ordinal))
            {
                throw new LinearizeException($"{path}: {e.Message}");
            }

            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    model = r.GetValue(model.Model),
                    text = path,
                    protocol = result.Protocol,
                    weight_dtype = r.GetValue(weightDType),
                    bf16_products = products,
                    max_length = evaluator.MaxLength,
                    stride = r.GetValue(stride) ?? (result.Protocol == "rolling" ? evaluator.MaxLength : (int?)null),
                    documents = result.Documents,
                    text_tokens = result.TextTokens,
                    tokens = result.Tokens,
                    mean_nll = Math.Round(result.MeanNll, 6),
                    ppl = Math.Round(result.Perplexity, 6),
                    seconds = Math.Round(result.Seconds, 3),
                    tokens_per_second = Math.Round(result.TokensPerSecond, 1),
                }));
                return 0;
            }

            var table = new Table().AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
            table.AddRow("protocol", result.Protocol + (result.Protocol == "rolling" ? $" (window {evaluator.MaxLength}, stride {r.GetValue(stride) ?? evaluator.MaxLength})" : $" (max {evaluator.MaxLength} tokens)"));
            if (format != Linearize.Inference.WeightFormat.Float32)
                table.AddRow("weights", $"rounded to {r.GetValue(weightDType)} (as the decode engine stores them)"
                    + (format == Linearize.Inference.WeightFormat.Q8 ? ", projection inputs to Q8 blocks" : "")
                    + (products ? ", projection inputs to bfloat16" : ""));
            table.AddRow("documents", result.Documents.ToString());
            table.AddRow("tokens scored", result.Tokens.ToString());
            table.AddRow("mean NLL (nats/token)", result.MeanNll.ToString("F6"));
            table.AddRow("perplexity", result.Perplexity.ToString("F6"));
            table.AddRow("tokens/s", result.TokensPerSecond.ToString("F0"));
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }
}
