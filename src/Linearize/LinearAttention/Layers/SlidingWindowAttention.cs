using Linearize.Caching;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Ops;
using Linearize.Modeling;
using static TorchSharp.torch;

namespace Linearize.LinearAttention.Layers;

/// <summary>
/// The training-free baseline every linear method must beat: the teacher's own attention restricted to a sliding
/// window of <c>window</c> keys, optionally with <c>sinks</c> always-visible first tokens, decoded with the same
/// fixed-size window cache as the Liger window branch.
/// </summary>
public sealed class SlidingWindowAttention : ProjectedMixer
{
    private readonly int _window;
    private readonly int _sinks;

    public SlidingWindowAttention(LlamaConfig config, int layerIndex, int window, int sinks)
        : base(nameof(SlidingWindowAttention), config, layerIndex)
    {
        if (window < 1 || sinks < 0)
            throw new LinearizeException($"swa needs window ≥ 1 and sinks ≥ 0 (got window {window}, sinks {sinks})");
        _window = window;
        _sinks = sinks;
        RegisterComponents();
    }

    /// <summary>Keys each query sees, itself included.</summary>
    public int Window => _window;

    /// <summary>First positions every query also sees.</summary>
    public int Sinks => _sinks;

    public override string Describe() => _sinks > 0 ? $"swa(window={_window}, sinks={_sinks})" : $"swa(window={_window})";

    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x);
        var y = WindowBranch.Attend(this, Rotate(q, ctx), Rotate(k, ctx), v.transpose(1, 2), ctx, _window, _sinks,
            ctx.Cache?.GetOrCreate(LayerIndex, () => new LinearLayerCache(_window - 1, _sinks)).Window);
        return Output(y.transpose(1, 2), x.dtype).MoveToOuterDisposeScope();
    }
}
