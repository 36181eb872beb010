using System.CommandLine;
using Linearize.Generation;
using Linearize.Generation.Chat;

namespace Linearize.Cli.Commands;

/// <summary><c>linearize chat</c>: an interactive terminal conversation, streamed, with the history kept in the
/// model's state.</summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var loader = new ServedModelLoader();
        var maxNew = new Option<int>("--max-new-tokens", "-n") { Description = "Tokens per reply at most", DefaultValueFactory = _ => 256 };
        var temperature = new Option<double>("--temperature", "-t") { Description = "0 = greedy; higher = more random", DefaultValueFactory = _ => 0.7 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling threshold", DefaultValueFactory = _ => 0.9 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed for sampling", DefaultValueFactory = _ => 0UL };
        var system = new Option<string?>("--system") { Description = "A system message that opens the conversation" };
        var stats = new Option<bool>("--stats") { Description = "After each reply, print tokens fed and generated, and the state size" };
        var command = new Command("chat",
            "Chat with a model in the terminal. Replies stream as they are generated; the conversation lives in the model's state, so each turn feeds only the new message " +
            "(a linear model never re-reads the history). Commands: /reset starts over, /exit quits; Ctrl-C stops a reply.");
        loader.AddTo(command);
        command.Add(maxNew);
        command.Add(temperature);
        command.Add(topP);
        command.Add(seed);
        command.Add(system);
        command.Add(stats);
        command.SetAction(r => CliRunner.Run(() =>
        {
            int n = r.GetValue(maxNew);
            if (n < 1)
                throw new LinearizeException($"--max-new-tokens must be at least 1, got {n}");
            var sampling = new SamplingOptions(r.GetValue(temperature), 0, r.GetValue(topP), r.GetValue(seed));
            sampling.Validate();
            var served = loader.Load(r);
            using var _e = served.Engine;
            using var session = new ChatSession(served.Engine, served.Tokenizer, served.Template, served.StopIds, served.ContextLimit);
            using var sampler = new Sampler(sampling);
            CancellationTokenSource? reply = null;
            Console.CancelKeyPress += (_, e) =>
            {
                // Ctrl-C during a reply stops the reply; at the prompt it quits, saying so, with the shell's 130 for SIGINT
                // (ReadLine cannot be interrupted, so the process ends here rather than by a return).
                if (reply is { } c && !c.IsCancellationRequested)
                {
                    e.Cancel = true;
                    c.Cancel();
                    return;
                }

                e.Cancel = true;
                Console.Out.WriteLine();
                Console.Out.Flush();
                Console.Error.WriteLine("(interrupted; bye)");
                Environment.Exit(130);
            };
            var err = Console.Error;
            err.WriteLine($"chatting with {served.Id} ({served.Template.Source}); /reset starts over, /exit quits, Ctrl-C stops a reply");
            string? systemText = r.GetValue(system);
            bool first = true;
            bool noted = false; // the context note is said once per conversation
            while (true)
            {
                Console.Out.Write("\n> ");
                Console.Out.Flush();
                string? line = Console.In.ReadLine();
                if (line is null)
                {
                    Console.Out.WriteLine(); // Ctrl-D: end the prompt's line so the shell's prompt starts on its own
                    break;
                }

                if (line.Trim() == "/exit")
                    break;
                if (Console.IsInputRedirected)
                    Console.Out.WriteLine(line); // a transcript reads as a conversation
                if (line.Trim() == "/reset")
                {
                    session.Reset();
                    first = true;
                    noted = false;
                    err.WriteLine("(conversation cleared)");
                    continue;
                }

                if (line.Trim().Length == 0)
                    continue;
                if (first && systemText is not null)
                    session.SeedSystem(systemText);
                first = false;
                reply = new CancellationTokenSource();
                try
                {
                    foreach (var piece in session.Reply(line, sampler, n, reply.Token))
                    {
                        Console.Out.Write(piece);
                        Console.Out.Flush();
                    }
                }
                catch (LinearizeException e)
                {
                    err.WriteLine($"\nerror: {e.Message}");
                    continue;
                }
                finally
                {
                    reply.Dispose();
                    reply = null;
                }

                Console.Out.WriteLine();
                Console.Out.Flush();
                if (session.LastFinishReason == "cancelled")
                    err.WriteLine("(reply stopped)");
                // A softmax model is stopped at its context by the session; a linear one goes on, with the note every
                // command gives beyond the teacher's positions.
                if (!noted && session.Position > served.Config.MaxPositionEmbeddings)
                {
                    ContextLimit.Check(served.Config, session.Position, "the conversation (tokens)");
                    noted = true;
                }

                if (r.GetValue(stats))
                    err.WriteLine($"[fed {session.LastFedTokens} tokens, generated {session.LastReplyTokens} ({session.LastFinishReason}); " +
                                  $"{session.Position} tokens in the conversation, state {session.StateBytes / 1024.0:F1} KiB]");
            }

            return 0;
        }));
        return command;
    }
}
