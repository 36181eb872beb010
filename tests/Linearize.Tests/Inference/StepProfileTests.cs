using System.Diagnostics;
using Linearize.Inference;
using Linearize.Methods;
using Linearize.Tests.Fixtures;
using Linearize.Workflows.Benchmarks;

namespace Linearize.Tests.Inference;

/// <summary>
/// Profiling a step times its parts without changing what it computes: the same logits bit for bit, one pass counted
/// per step, every part that runs at least once timed, and the parts adding up to no more than the steps' wall time.
/// </summary>
[Collection("Torch")]
public sealed class StepProfileTests
{
    [Theory]
    [InlineData("teacher")]
    [InlineData("liger-gla")]
    public void ProfiledStepsComputeTheSameLogitsAndTimeEveryPart(string method)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        using var model = method == "teacher" ? TinyModels.Create("gqa-untied") : Converter.Convert(teacher, LinearAttention.LigerConversionTests.Lin(method));
        using var engine = Engines.Create(model, new EngineOptions { Threads = 2 });
        int[] tokens = { 3, 17, 5, 9, 30, 2 };

        using var plain = engine.CreateSequence();
        var expected = tokens.Select(t => engine.Step(plain, t).ToArray()).ToArray();

        using var profiled = engine.CreateSequence();
        var profile = new StepProfile();
        engine.Profile = profile;
        var watch = Stopwatch.StartNew();
        var actual = tokens.Select(t => engine.Step(profiled, t).ToArray()).ToArray();
        double wallMs = watch.Elapsed.TotalMilliseconds;
        engine.Profile = null;

        for (int i = 0; i < tokens.Length; i++)
            Assert.Equal(expected[i], actual[i]);
        Assert.Equal(tokens.Length, profile.Passes);
        foreach (var (region, ms) in profile.PerPass())
            Assert.True(ms > 0, $"{region} was not timed");
        Assert.True(profile.PerPass().Sum(p => p.MsPerPass) * profile.Passes <= wallMs, "the parts add up to more than the steps took");

        engine.Step(profiled, 4); // detached: nothing more is recorded
        Assert.Equal(tokens.Length, profile.Passes);
    }

    [Fact]
    public void TheBenchmarkProfilesOnlyWhenAsked()
    {
        using var dir = TinyModels.TempDirectory();
        var source = TinyModels.SavedSource(dir);
        var options = new DecodeBenchmarkOptions { Contexts = new[] { 8 }, Steps = 3, Engine = new EngineOptions { Threads = 2 }, SyntheticFill = true };
        Assert.Null(DecodeBenchmark.Run(new[] { ("m", source) }, options).Single().Rows.Single().Profile);
        var row = DecodeBenchmark.Run(new[] { ("m", source) }, options with { Profile = true }).Single().Rows.Single();
        Assert.Equal(Enum.GetValues<StepRegion>().Length, row.Profile!.Count);
        Assert.True(row.Profile.Sum(p => p.MsPerStep) <= row.MsPerToken * 1.0001, "the parts add up to more than a step");
        Assert.Throws<LinearizeException>(() => (options with { Engine = null, Profile = true }).Validate());
    }
}
