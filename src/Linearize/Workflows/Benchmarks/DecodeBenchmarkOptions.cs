using Linearize.Inference;

namespace Linearize.Workflows.Benchmarks;

/// <summary>What <see cref="DecodeBenchmark"/> measures.</summary>
public sealed record DecodeBenchmarkOptions
{
    /// <summary>Context lengths, each measured separately.</summary>
    public required IReadOnlyList<int> Contexts { get; init; }

    /// <summary>Timed steps after each context (after <see cref="DecodeBenchmark.WarmUpSteps"/> untimed ones).</summary>
    public int Steps { get; init; } = 64;

    /// <summary>Sequences stepped together; each starts from the same context.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>Fill the engine's state with seeded random values instead of prefilling random tokens (lengths far beyond
    /// what a prefill could reach in a benchmark's time; speed only).</summary>
    public bool SyntheticFill { get; init; }

    /// <summary>Rows per TorchSharp forward when the context is prefilled.</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>After the timed steps, alternate steps with plain reads of the engine's matrices
    /// (<see cref="DecodeRow.FloorMs"/>): the bandwidth floor measured on the weights' own pages, beside the steps it
    /// bounds. Engine only.</summary>
    public bool ReadFloor { get; init; }

    /// <summary>Step-and-read pairs for <see cref="ReadFloor"/>, at most (never more than the timed steps).</summary>
    public int FloorPairs { get; init; } = 16;

    /// <summary>Time each part of the timed steps (<see cref="DecodeRow.Profile"/>). Engine only.</summary>
    public bool Profile { get; init; }

    /// <summary>The engine's options; null measures TorchSharp's own single-token forward instead.</summary>
    public EngineOptions? Engine { get; init; }

    public void Validate()
    {
        if (Contexts.Count == 0 || Contexts.Any(c => c < 1))
            throw new LinearizeException("--contexts: give at least one positive length");
        if (Steps < 1 || PrefillChunk < 1 || Batch < 1)
            throw new LinearizeException("--new-tokens, --prefill-chunk and --batch must be at least 1");
        if (Engine is null && Batch > 1)
            throw new LinearizeException("--batch needs the decode engine (drop --engine torch)");
        if (Engine is null && Profile)
            throw new LinearizeException("--profile times the decode engine's parts (drop --engine torch)");
    }
}
