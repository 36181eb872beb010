using System.CommandLine;
using Linearize.Generation.Chat;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Serving;

namespace Linearize.Cli;

/// <summary>The options of commands that hold a conversation or serve (<c>serve</c>, <c>chat</c>, <c>bench serve</c>):
/// the model, the engine, and the chat format.</summary>
public sealed class ServedModelLoader
{
    public ModelOptions Model { get; } = new();

    public EngineCliOptions Engine { get; } = new();

    public Option<string> ChatFormat { get; } = new("--chat-format")
    {
        Description = "Chat prompt format: auto (from the model's tokenizer_config.json chat_template; Alpaca when it has none), alpaca, llama3 or chatml",
        DefaultValueFactory = _ => "auto",
    };

    public ServedModelLoader() => ChatFormat.AcceptOnlyFromAmong("auto", "alpaca", "llama3", "chatml");

    public void AddTo(Command command)
    {
        // No --dtype: nothing runs in TorchSharp here; the engine's --weight-dtype chooses the weights' storage.
        command.Add(Model.Model);
        command.Add(Model.Tokenizer);
        command.Add(Engine.WeightDType);
        command.Add(Engine.Threads);
        command.Add(Engine.NoMmap);
        command.Add(Engine.BFloat16Products);
        command.Add(ChatFormat);
    }

    /// <summary>Packs a batch-invariant engine straight from the model's files (<see cref="Engines.Load"/>: no TorchSharp
    /// model is held). The caller disposes the engine.</summary>
    public ServedModel Load(ParseResult r, string? id = null, string? modelPath = null)
    {
        string path = modelPath ?? r.GetValue(Model.Model)!;
        string format = r.GetValue(ChatFormat)!;
        var source = ModelSource.Resolve(path, r.GetValue(Model.Tokenizer));
        var config = source.LoadConfig();
        var tokenizer = ModelLoader.LoadTokenizer(source, config);
        var template = format == "auto"
            ? ChatTemplate.ForModel(source.Path, source.TokenizerPath)
            : ChatTemplate.Create(ChatTemplate.ParseFormat(format));
        var engine = Engines.Load(source, Engine.Parse(r) with { BatchInvariant = true });
        try
        {
            return new ServedModel(id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(path))), config, engine, tokenizer, template);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }
}
