namespace Linearize.Inference.Threading;

/// <summary>
/// Work over an index range that <see cref="WorkerPool"/> splits across threads. Jobs are objects the caller keeps and
/// reuses (their inputs set as fields before each run), so a decoding step allocates nothing.
/// </summary>
public abstract class RangeJob
{
    /// <summary>Processes indices <c>[start, end)</c>; called at most once per thread per run, never with an empty range.</summary>
    public abstract void Execute(int start, int end);
}
