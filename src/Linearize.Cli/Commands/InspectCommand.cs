using System.CommandLine;
using System.Text.Json;
using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Modeling;
using Spectre.Console;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize inspect</c>: what a model is.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("inspect", "Show a model's architecture, parameter count, dtype, size on disk, tokenizer and per-layer mixers.");
        model.AddTo(command);
        command.Add(json);
        command.SetAction(r => CliRunner.Run(() =>
        {
            var source = ModelSource.Resolve(r.GetValue(model.Model)!, r.GetValue(model.Tokenizer));
            var tokenizer = source.TokenizerPath is null ? null : source.LoadTokenizer();
            // From the config and one layer of each kind, never the weights: a model larger than memory can be inspected.
            var c = source.LoadConfig();
            if (source.Kind == ModelSourceKind.HuggingFaceDirectory)
                using (Linearize.Checkpoints.SafetensorsCheckpoint.Open(source.Path)) { } // headers only: a truncated shard is named here
            var summary = ModelSummary.Of(c);
            var mixers = summary.Mixers;
            var info = new
            {
                path = source.Path,
                format = source.Kind == ModelSourceKind.HuggingFaceDirectory ? "huggingface" : "llama2c",
                model_type = c.ModelType,
                parameters = summary.Parameters,
                dtype = model.ParseDType(r).ToString().ToLowerInvariant(),
                stored_dtype = c.TorchDtype,
                quantization = Linearize.Inference.Q8Checkpoint.IsQuantized(c) ? Linearize.Inference.Q8Checkpoint.QuantMethod : null,
                size_on_disk = source.SizeOnDisk,
                hidden_size = c.HiddenSize,
                intermediate_size = c.IntermediateSize,
                layers = c.NumHiddenLayers,
                heads = c.NumAttentionHeads,
                kv_heads = c.NumKeyValueHeads,
                head_dim = c.HeadDim,
                vocab_size = c.VocabSize,
                max_position_embeddings = c.MaxPositionEmbeddings,
                rope_theta = c.RopeTheta,
                rope_scaling = c.RopeScaling.Type.ToString().ToLowerInvariant(),
                tie_word_embeddings = c.TieWordEmbeddings,
                tokenizer = tokenizer?.Description,
                tokenizer_path = source.TokenizerPath,
                mixers,
                notes = Linearize.Checkpoints.Configuration.LigerFormat.Notes(c),
            };
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(info, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }

            var table = new Table().AddColumn("property").AddColumn("value");
            table.AddRow("path", Markup.Escape(info.path));
            table.AddRow("format", info.format);
            table.AddRow("architecture", $"{c.ModelType}: {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, MLP {c.IntermediateSize}, " +
                                         $"{c.NumAttentionHeads} heads / {c.NumKeyValueHeads} KV heads × {c.HeadDim}");
            table.AddRow("vocabulary", $"{c.VocabSize} ({(c.TieWordEmbeddings ? "tied" : "untied")} head)");
            table.AddRow("RoPE", $"theta {c.RopeTheta}, scaling {info.rope_scaling}; context {c.MaxPositionEmbeddings}");
            table.AddRow("parameters", $"{info.parameters:N0}");
            table.AddRow("dtype", $"{info.dtype} (stored {c.TorchDtype}{(info.quantization is { } q ? $"; engine matrices {q}" : "")})");
            table.AddRow("size on disk", ConsoleUi.Bytes(info.size_on_disk));
            table.AddRow("tokenizer", Markup.Escape(tokenizer?.Description ?? "none found (pass --tokenizer)"));
            var groups = mixers.Select((m, i) => (m, i)).GroupBy(x => x.m)
                .Select(g => $"{g.Key} × {g.Count()} (layers {LayerRanges(g.Select(x => x.i))})");
            table.AddRow("mixers", Markup.Escape(string.Join("; ", groups)));
            if (info.notes.Count > 0)
                table.AddRow("authors' format", Markup.Escape(string.Join("\n", info.notes)));
            ConsoleUi.Out.Write(table);
            return 0;
        }));
        return command;
    }

    /// <summary>Layer indices as ranges, <c>0–2, 4, 6–11</c>: short, and a narrow terminal wraps it only at spaces
    /// (a list "0,1,2,…" would wrap mid-number).</summary>
    public static string LayerRanges(IEnumerable<int> layers)
    {
        var sorted = layers.Order().ToList();
        var parts = new List<string>();
        for (int i = 0; i < sorted.Count;)
        {
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] == sorted[j] + 1)
                j++;
            parts.Add(j == i ? $"{sorted[i]}" : j == i + 1 ? $"{sorted[i]}, {sorted[j]}" : $"{sorted[i]}–{sorted[j]}");
            i = j + 1;
        }

        return string.Join(", ", parts);
    }
}
