using static TorchSharp.torch;

namespace Linearize.LinearAttention;

/// <summary>
/// Collects each LoLCATs layer's attention-transfer losses during one forward pass (docs/METHODS.md §2.5). While a layer holds
/// a recorder it computes the teacher's softmax attention (float32, no grad) from the same q/k/v, records
/// <c>MSE(hybrid, teacher)</c> over the per-head outputs before <c>o_proj</c> (and, when <see cref="WithCrossEntropy"/>,
/// the cross-entropy between the teacher's and the hybrid's attention rows), and passes the <b>teacher's</b> output
/// on, so every layer trains independently.
/// </summary>
public sealed class AttentionTransferRecorder : IDisposable
{
    private readonly List<(int Layer, Tensor Mse, Tensor? Xent)> _entries = new();

    private readonly IReadOnlySet<int>? _layers;

    /// <param name="withCrossEntropy">Also compute the attention-row cross-entropy.</param>
    /// <param name="layers">Layers whose losses are recorded (null = all). The others still pass the teacher's
    /// attention on, without computing the hybrid (block-wise transfer trains one block at a time).</param>
    public AttentionTransferRecorder(bool withCrossEntropy = false, IReadOnlySet<int>? layers = null)
    {
        WithCrossEntropy = withCrossEntropy;
        _layers = layers;
    }

    /// <summary>Whether <paramref name="layer"/>'s losses are recorded.</summary>
    public bool Records(int layer) => _layers is null || _layers.Contains(layer);

    /// <summary>Also compute the attention-row cross-entropy (quadratic in T: the hybrid's full attention weights).</summary>
    public bool WithCrossEntropy { get; }

    public IReadOnlyList<(int Layer, Tensor Mse, Tensor? Xent)> Entries => _entries;

    public void Record(int layer, Tensor mse, Tensor? xent) =>
        _entries.Add((layer, mse.DetachFromDisposeScope(), xent?.DetachFromDisposeScope()));

    /// <summary>Mean over the recorded layers of the MSE, and of the cross-entropy (0 when not computed).</summary>
    public (Tensor Mse, Tensor Xent) Means()
    {
        if (_entries.Count == 0)
            throw new LinearizeException("attention transfer: no LoLCATs layer ran (is the model converted with lolcats-*?)");
        var mse = stack(_entries.Select(e => e.Mse).ToArray()).mean();
        var xent = WithCrossEntropy ? stack(_entries.Select(e => e.Xent!).ToArray()).mean() : zeros_like(mse);
        return (mse, xent);
    }

    public void Clear()
    {
        foreach (var (_, mse, xent) in _entries)
        {
            mse.Dispose();
            xent?.Dispose();
        }

        _entries.Clear();
    }

    public void Dispose() => Clear();
}
