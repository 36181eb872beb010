using Linearize.Inference.Kernels;

namespace Linearize.Inference;

/// <summary>How a <see cref="DecodeEngine"/> packs weights and runs.</summary>
public sealed record EngineOptions
{
    /// <summary>Storage of every weight matrix (embedding and head included); norms, activations and states stay float32.</summary>
    public WeightFormat Weights { get; init; } = WeightFormat.Float32;

    /// <summary>A q8 checkpoint (<see cref="Q8Checkpoint"/>) runs in <see cref="WeightFormat.Q8"/>, its matrices mapped in
    /// place, whatever <see cref="Weights"/> says: it holds nothing finer, and dequantizing it to float32 would take 3.6×
    /// the memory for the same weights. Off, its matrices are dequantized to <see cref="Weights"/>.</summary>
    public bool KeepStoredQ8 { get; init; } = true;

    /// <summary>Use a mapped checkpoint's rows where they are when they already are in <see cref="Weights"/>'s format
    /// (bfloat16 or float32 <c>[out, in]</c> matrices), instead of copying them: start-up reads nothing, the weights are
    /// the page cache's (shared with other processes and evictable), and the process holds no second copy. Off, every
    /// matrix is copied into the process's own memory (as llama.cpp's <c>--no-mmap</c>), which can use huge pages.</summary>
    public bool WeightsInPlace { get; init; } = true;

    /// <summary>Threads of the engine's worker pool (the caller included). Default: one per core.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Instruction set of the matrix kernels; lower levels exist for tests and machines without AVX-512.</summary>
    public KernelIsa Isa { get; init; } = KernelIsaSupport.Best;

    /// <summary>Matrices smaller than this run on the calling thread: a parallel region costs more than it saves.</summary>
    public long ParallelMinBytes { get; init; } = 64 * 1024;

    /// <summary>Make a batched step give each sequence exactly the logits it would get alone (see
    /// <see cref="MatVec.Rows"/>): what a server needs so that a request's output does not depend on its neighbours.
    /// Off by default, because the tiled kernels reuse each loaded weight vector for several sequences in registers.</summary>
    public bool BatchInvariant { get; init; }

    /// <summary>Multiply every <see cref="WeightFormat.BFloat16"/> matrix by its input rounded to bfloat16 too, bfloat16 ×
    /// bfloat16 with float32 sums, as llama.cpp does for BF16 weights (<see cref="MatMulBFloat16"/>): with AVX512-BF16
    /// (<c>vdpbf16ps</c>) twice the multiply-adds per instruction of float32, which is what bounds prefill. Decoding and
    /// prefill alike, so they agree bit for bit; the reference rounds the same inputs (<see cref="ActivationRounding"/>).
    /// On by default, as in llama.cpp: the activations lose their low 16 bits (the perplexity cost is in docs/RESULTS.md),
    /// and where widening every weight to float32 is what bounds a step — prefill, and decoding a model whose step is
    /// long enough for the widening to show beside the memory traffic — the step is faster. Off, the inputs stay float32
    /// and the weights are widened (<see cref="MatVec"/>, <see cref="MatMat"/>). No effect on float32 and q8 matrices.</summary>
    public bool BFloat16Products { get; init; } = true;

    /// <summary>Prompt tokens per prefill block: the rows of one matrix × matrix product. Larger blocks reuse each weight
    /// for more tokens; the activations of a block (about <c>4 · (2·intermediate + 6·hidden)</c> bytes per token) must
    /// stay modest.</summary>
    public int PrefillChunk { get; init; } = 512;

    public static WeightFormat ParseFormat(string text) => text.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => WeightFormat.Float32,
        "bfloat16" or "bf16" => WeightFormat.BFloat16,
        "q8" or "q8_0" or "int8" => WeightFormat.Q8,
        _ => throw new LinearizeException($"--weight-dtype: '{text}' is not one of float32, bfloat16, q8"),
    };

    public static string FormatName(WeightFormat format) => format switch
    {
        WeightFormat.Float32 => "float32",
        WeightFormat.BFloat16 => "bfloat16",
        _ => "q8",
    };
}
