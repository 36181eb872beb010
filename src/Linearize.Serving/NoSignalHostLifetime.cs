using Microsoft.Extensions.Hosting;

namespace Linearize.Serving;

/// <summary>
/// A host lifetime that leaves the process's signals alone. The default <c>ConsoleLifetime</c> takes SIGTERM, SIGINT
/// and SIGQUIT away from the process and only raises <c>ApplicationStopping</c>, which a server started with
/// <c>StartAsync</c> never waits on — so <c>kill PID</c> did nothing. A library must not decide what a signal means
/// for its host process (tests run servers in-process); the CLI does, and calls <see cref="LinearizeServer.ShutdownAsync"/>.
/// </summary>
internal sealed class NoSignalHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
