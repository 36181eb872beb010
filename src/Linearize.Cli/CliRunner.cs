namespace Linearize.Cli;

/// <summary>
/// Runs a command body and turns failures into one line on stderr and a non-zero exit code:
/// 1 for bad input (files, flags, configs), 130 for Ctrl-C (143 for SIGTERM), 70 for bugs.
/// </summary>
public static class CliRunner
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (LinearizeException e)
        {
            return Fail(e.Message, 1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(e.Message, 1);
        }
        catch (OperationCanceledException)
        {
            return Fail("cancelled", Interruption.LastExitCode);
        }
        catch (Exception e)
        {
            if (Environment.GetEnvironmentVariable("LINEARIZE_DEBUG") is not null)
                Console.Error.WriteLine(e);
            return Fail($"unexpected {e.GetType().Name}: {e.Message} (a bug; set LINEARIZE_DEBUG=1 for the stack trace)", 70);
        }
    }

    private static int Fail(string message, int code)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"error: {message}");
        return code;
    }
}
