using System.Diagnostics;
using Linearize.Training;

namespace Linearize.Tests.Training;

/// <summary>Training's default thread count: the cores other work leaves idle.</summary>
public sealed class FreeCoresTests
{
    [Fact]
    public void WithEveryCoreKeptBusyOneThreadIsLeft()
    {
        var loops = Enumerable.Range(0, Environment.ProcessorCount)
            .Select(_ => Process.Start(new ProcessStartInfo("/bin/sh", new[] { "-c", "while :; do :; done" }))!).ToList();
        try
        {
            Thread.Sleep(200); // the loops running before the window opens
            Assert.Equal(1, FreeCores.Measure(TimeSpan.FromMilliseconds(500)));
        }
        finally
        {
            foreach (var p in loops)
            {
                p.Kill();
                p.WaitForExit();
                p.Dispose();
            }
        }
    }
}
