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
        Model.AddTo(command);
        command.Add(Engine.WeightDType);
        command.Add(Engine.Threads);
        command.Add(ChatFormat);
    }

    /// <summary>Loads the model and packs a batch-invariant engine. The caller disposes the model and engine.</summary>
    public ServedModel Load(ParseResult r, string? id = null, string? modelPath = null)
    {
        string path = modelPath ?? r.GetValue(Model.Model)!;
        string? tokenizerPath = r.GetValue(Model.Tokenizer);
        string format = r.GetValue(ChatFormat)!;
        var (llama, tokenizer, source) = ModelLoader.LoadWithTokenizer(path, tokenizerPath, Model.ParseDType(r));
        try
        {
            var template = format == "auto"
                ? ChatTemplate.ForModel(source.Path, source.TokenizerPath)
                : ChatTemplate.Create(ChatTemplate.ParseFormat(format));
            var engine = Linearize.Methods.Engines.Create(llama, Engine.Parse(r) with { BatchInvariant = true });
            return new ServedModel(id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(path))), llama, engine, tokenizer, template);
        }
        catch
        {
            llama.Dispose();
            throw;
        }
    }
}
