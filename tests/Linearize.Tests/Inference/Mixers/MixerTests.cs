using static TorchSharp.torch;

using Linearize.Checkpoints.Configuration;

namespace Linearize.Tests.Inference.Mixers;

/// <summary>
/// Each engine mixer against its TorchSharp layer, one layer at a time (in the spirit of llama.cpp's
/// <c>test-backend-ops</c>): random weights and random rows, the mixer output of every row and the whole decoding state
/// (KV cache, window ring and sinks, recurrent / slot / linear states) after every step, one case per method, so a
/// drift fails the test of the family it is in and names the quantity that drifted. The end-to-end tests
/// (<see cref="Linearize.Tests.Inference.EngineEqualsTorchTests"/>) then only have to show that the layers compose.
/// </summary>
[Collection("Torch")]
public sealed class MixerTests
{
    /// <summary>Allowed drift relative to each quantity's scale. Float32 round-off on these sizes stays near 1e-6; a
    /// 0.1 % change of one family's log gate moves its outputs and states by 1e-4 or more.</summary>
    private const double Tolerance = 1e-5;

    /// <summary>70 steps from an empty state: every window (8 keys) wraps its ring many times, LoLCATs folds a key every
    /// step (sliding window) or a block every 8 (terrace).</summary>
    [Theory]
    [MemberData(nameof(MixerPair.Cases), MemberType = typeof(MixerPair))]
    public void StepsMatchTheTorchLayer(string method)
    {
        using var pair = MixerPair.Create(method);
        using var x = MixerPair.Rows(70, seed: 11);
        var drift = new MixerDrift();
        StepBoth(pair, x, 0, 70, drift);

        drift.AssertWithin(method, Tolerance);
    }

    /// <summary>A 77-row engine prefill in blocks of 20 (77 is a multiple of no block, chunk, sub-chunk or window) against
    /// the layer's chunked forward pass over all 77 rows, then 30 steps.</summary>
    [Theory]
    [MemberData(nameof(MixerPair.Cases), MemberType = typeof(MixerPair))]
    public void PrefillThenStepsMatchTheTorchLayer(string method)
    {
        using var pair = MixerPair.Create(method, seed: 6);
        const int prompt = 77, steps = 30;
        using var x = MixerPair.Rows(prompt + steps, seed: 12);
        var drift = new MixerDrift();
        using (var head = x.narrow(1, 0, prompt))
            drift.Add("prefill output", "prefill", pair.Torch(head), pair.Engine(head, prefill: true));
        drift.AddStates(pair, "prefill");
        StepBoth(pair, x, prompt, prompt + steps, drift);

        drift.AssertWithin(method, Tolerance);
    }

    /// <summary>The layer prefills 37 rows alone; the mixer imports its cache (<c>EngineMixer.Import</c>) and both step on.</summary>
    [Theory]
    [MemberData(nameof(MixerPair.Cases), MemberType = typeof(MixerPair))]
    public void HandOverFromTheTorchCacheMatches(string method)
    {
        using var pair = MixerPair.Create(method, seed: 7);
        const int prompt = 37, steps = 30;
        using var x = MixerPair.Rows(prompt + steps, seed: 13);
        using (var head = x.narrow(1, 0, prompt))
            pair.Torch(head);
        pair.ImportTorchCache();
        var drift = new MixerDrift();
        drift.AddStates(pair, "hand-over");
        StepBoth(pair, x, prompt, prompt + steps, drift);

        drift.AssertWithin(method, Tolerance);
    }

    [Fact]
    public void EveryMethodHasAMixerCase()
    {
        var missing = LinearizationMethods.Names.Except(MixerPair.Methods).ToArray();
        Assert.True(missing.Length == 0, $"no per-mixer engine test for {string.Join(", ", missing)}: add it to MixerPair.Methods");
    }

    /// <summary>Rows <c>[from, to)</c> of <paramref name="x"/> one step at a time through both sides, recording output
    /// and state drift after each.</summary>
    private static void StepBoth(MixerPair pair, Tensor x, int from, int to, MixerDrift drift)
    {
        for (int t = from; t < to; t++)
        {
            using var row = x.narrow(1, t, 1);
            drift.Add("step output", $"step {t}", pair.Torch(row), pair.Engine(row));
            drift.AddStates(pair, $"step {t}");
        }
    }
}
