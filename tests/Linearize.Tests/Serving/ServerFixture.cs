using Linearize.Generation;
using Linearize.Generation.Chat;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Modeling.Llama;
using Linearize.Serving;
using Linearize.Tests.Fixtures;
using Linearize.Tests.LinearAttention;
using Linearize.Tokenization;

namespace Linearize.Tests.Serving;

/// <summary>A tiny seeded model (the teacher or a Liger-GLA conversion) served in-process on a free loopback port.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(LlamaForCausalLM model, ServedModel served, LinearizeServer server)
    {
        Model = model;
        Served = served;
        Server = server;
        Http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
    }

    public LlamaForCausalLM Model { get; }

    public ServedModel Served { get; }

    public LinearizeServer Server { get; }

    public HttpClient Http { get; }

    public static LlamaForCausalLM CreateModel(string method)
    {
        var teacher = TinyModels.Create("gqa-untied");
        if (method == "teacher")
            return teacher;
        using (teacher)
            return Converter.Convert(teacher, LigerConversionTests.Lin(method));
    }

    public static async Task<TestServer> StartAsync(string method = "teacher", int maxBatch = 4, int maxQueue = 64, ChatTemplate? template = null,
        int prefillSlice = 256, int? maxPromptTokens = null)
    {
        var model = CreateModel(method);
        var engine = Engines.Create(model, new EngineOptions { Threads = 2, BatchInvariant = true });
        var served = new ServedModel("tiny-" + method, model.Config, engine, new CharTokenizer(model.Config.VocabSize), template ?? ChatTemplate.Alpaca());
        var server = await LinearizeServer.StartAsync(served, new ServerOptions
        {
            Port = 0, MaxBatch = maxBatch, MaxQueue = maxQueue, PrefillSliceTokens = prefillSlice, MaxPromptTokens = maxPromptTokens,
        });
        return new TestServer(model, served, server);
    }

    /// <summary>What greedy decoding of <paramref name="ids"/> yields alone on a fresh engine of the same model: the
    /// text, the finish reason and the token count, as the server should report them.</summary>
    public (string Text, string Finish, int Tokens) Alone(IReadOnlyList<int> ids, int maxTokens, IReadOnlyList<string>? stop = null)
    {
        using var engine = Engines.Create(Model, new EngineOptions { Threads = 1, BatchInvariant = true });
        using var sampler = new Sampler(SamplingOptions.Greedy);
        var detok = Served.Tokenizer.CreateStreamingDetokenizer();
        var matcher = new StopSequenceMatcher(stop ?? Array.Empty<string>());
        var text = new System.Text.StringBuilder();
        int n = 0;
        // The server prefills every prompt on the engine (in slices between decode steps, which give the same bits).
        IEnumerable<int> tokens = new EngineGenerator(engine).Generate(ids, maxTokens, sampler, Served.StopIds);
        foreach (int t in tokens)
        {
            if (Served.StopIds.Contains(t))
                return (text.ToString(), "stop", n);
            n++;
            text.Append(matcher.Push(detok.Push(t)));
            if (matcher.Stopped)
                return (text.ToString(), "stop", n);
        }

        return (text + matcher.Push(detok.Flush()) + matcher.Flush(), "length", n);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Served.Engine.Dispose();
        Model.Dispose();
    }
}
