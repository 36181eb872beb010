namespace Linearize;

/// <summary>
/// An error caused by the user's input (a file, a flag, a configuration) rather than by a bug.
/// The message is meant to be shown as-is on one line: it names the file or value and the problem.
/// </summary>
public class LinearizeException : Exception
{
    public LinearizeException(string message) : base(message) { }

    public LinearizeException(string message, Exception inner) : base(message, inner) { }
}
