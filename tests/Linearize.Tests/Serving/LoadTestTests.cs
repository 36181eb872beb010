using Linearize.Serving.LoadTest;

namespace Linearize.Tests.Serving;

/// <summary>The load test behind <c>bench serve</c>, small: 12 concurrent clients at batch 1 and 4 on the teacher and
/// a Liger-GLA conversion all get their single-request answers, none is lost, /health answers, and after 200
/// malformed requests the server still answers correctly.</summary>
[Collection("Torch")]
public sealed class LoadTestTests
{
    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    public async Task ConcurrentClientsGetTheirAloneAnswersAndMalformedBurstsDoNotHurt(string method)
    {
        await using var s = await TestServer.StartAsync(method); // only for the model; the load test starts its own servers
        var test = new ServeLoadTest(s.Served, ServeLoadTest.DefaultPrompts(12), 16);
        var reference = await test.ReferenceAsync(CancellationToken.None);
        Assert.Contains(reference, r => r.Length > 0);
        foreach (int batch in new[] { 1, 4 })
        {
            var row = await test.RunAsync(batch, reference, CancellationToken.None);
            Assert.Equal((0, 0, 0), (row.Mismatches, row.Lost, row.HealthFailures));
            Assert.True(row.TokensPerSecond > 0);
            Assert.True(row.StateBytesPerSequence > 0);
        }

        var sweep = await test.MalformedAsync(200, 8, reference[0], CancellationToken.None);
        Assert.Equal(200, sweep.AnsweredWith4xx);
        Assert.True(sweep.ServesAfterwards);
    }
}
