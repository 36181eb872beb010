namespace Linearize.Checkpoints;

/// <summary>
/// Crash points for tests of what an interrupted write leaves behind: when the environment variable
/// <c>LINEARIZE_FAULT</c> names a point, the process dies there at once (<see cref="Environment.FailFast(string)"/>:
/// no finally blocks, no cleanup — what <c>kill -9</c> does). Unset, a point costs one cached comparison.
/// </summary>
public static class FaultInjection
{
    private static readonly string? Armed = Environment.GetEnvironmentVariable("LINEARIZE_FAULT");

    public static void Point(string name)
    {
        if (Armed is not null && Armed == name)
            Environment.FailFast($"LINEARIZE_FAULT={name}: simulated crash");
    }
}
