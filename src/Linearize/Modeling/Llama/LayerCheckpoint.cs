using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Modeling.Llama;

/// <summary>
/// Activation checkpointing for one decoder layer (as <c>torch.utils.checkpoint</c>'s reentrant form): the forward pass
/// runs without recording the layer's intermediate activations and keeps only its input <c>[B, T, C]</c> (and the RoPE
/// tables); the backward pass runs the layer again with gradients on and back-propagates through that recomputation.
/// Training memory then holds one layer's activations plus one residual-stream tensor per layer, for the price of a
/// second forward pass. The recomputation is the same arithmetic on the same inputs, so gradients equal the plain
/// backward's (see <c>ActivationCheckpointTests</c>); a layer with randomness (LoRA dropout) must not be checkpointed,
/// because the second pass would draw different masks.
/// </summary>
internal sealed class LayerCheckpoint : autograd.SingleTensorFunction<LayerCheckpoint>
{
    public override string Name => nameof(LayerCheckpoint);

    /// <summary>Layer <paramref name="layer"/> on <paramref name="input"/>, recomputed for its backward pass. The layer's
    /// trainable parameters are passed as inputs too: the function's backward returns their gradients, and libtorch
    /// records the function at all when only they require gradients (the first layer's input, from a frozen embedding,
    /// does not).</summary>
    public static Tensor Apply(LlamaDecoderLayer layer, Tensor input, AttentionContext context)
    {
        var trainable = layer.parameters().Where(p => p.requires_grad).ToArray();
        return apply(new object[] { input, layer, context, trainable.Length }.Concat(trainable).ToArray());
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var layer = (LlamaDecoderLayer)vars[1];
        var context = (AttentionContext)vars[2];
        if (context.Cache is not null)
            throw new InvalidOperationException("a checkpointed layer cannot update a cache: the recomputation would write it twice");
        // Saved as autograd variables, so libtorch keeps them alive until the backward pass whatever the callers' dispose
        // scopes do with their handles.
        var saved = new List<Tensor> { input, context.PositionIds, context.Cos, context.Sin };
        if (context.KeyPadding is not null)
            saved.Add(context.KeyPadding);
        ctx.save_for_backward(saved);
        ctx.save_data("layer", layer);
        ctx.save_data("trainable", (int)vars[3]);
        ctx.save_data("past", context.PastLength);
        return layer.forward(input, context);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var layer = (LlamaDecoderLayer)ctx.get_data("layer");
        var context = new AttentionContext(saved[1], saved[2], saved[3], (long)ctx.get_data("past"), saved.Count > 4 ? saved[4] : null, null);
        using var grad = torch.enable_grad();
        var input = saved[0].detach().requires_grad_(true);
        using var output = layer.forward(input, context);
        var trainable = layer.parameters().Where(p => p.requires_grad).ToList();
        if (trainable.Count != (int)ctx.get_data("trainable"))
            throw new InvalidOperationException("a checkpointed layer's trainable parameters changed between its forward and backward passes");
        // One entry per argument of Apply's call, in order: the layer input's gradient, none for the layer, the context
        // and the count, then each trainable parameter's (undefined where unused).
        var grads = torch.autograd.grad(new[] { output }, new[] { input }.Concat(trainable).ToList(), new[] { gradOutput }, allow_unused: true);
        return new List<Tensor> { grads[0], null!, null!, null! }.Concat(grads.Skip(1)).ToList();
    }
}
