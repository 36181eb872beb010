using Linearize.Inference.Mixers;

namespace Linearize.Inference;

/// <summary>
/// One decoder block packed for the engine. q/k/v are fused into one matrix <c>[(H + 2·H_kv)·D, C]</c> and gate/up into
/// <c>[2·I, C]</c>, so each takes one pass over memory and one parallel region. Biases (Qwen2's q/k/v, optional
/// o_proj and MLP bias) are float32 vectors, or null.
/// </summary>
internal sealed class EngineLayer : IDisposable
{
    public required float[] AttentionNorm { get; init; }

    public required PackedMatrix Qkv { get; init; }

    public float[]? QkvBias { get; init; }

    public required PackedMatrix Output { get; init; }

    public float[]? OutputBias { get; init; }

    public required float[] MlpNorm { get; init; }

    public required PackedMatrix GateUp { get; init; }

    public float[]? GateUpBias { get; init; }

    public required PackedMatrix Down { get; init; }

    public float[]? DownBias { get; init; }

    public required EngineMixer Mixer { get; init; }

    public long MatrixBytes => Qkv.Bytes + Output.Bytes + GateUp.Bytes + Down.Bytes;

    public void Dispose()
    {
        Qkv.Dispose();
        Output.Dispose();
        GateUp.Dispose();
        Down.Dispose();
    }
}
