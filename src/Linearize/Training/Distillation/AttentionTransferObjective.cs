using System.Globalization;
using Linearize.Data;
using Linearize.LinearAttention;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Modeling;
using static TorchSharp.torch;

namespace Linearize.Training.Distillation;

/// <summary>
/// LoLCATs stage 1 (docs/METHODS.md §2.5, reference <c>distill_attention_xent_mse.py</c>): every layer with parameters to
/// transfer (<see cref="ITransferLayer"/>: LoLCATs' feature maps and window factors, a Liger layer's <c>b_proj</c> /
/// <c>g_proj</c>) computes the
/// teacher's softmax attention from the same q/k/v and passes the teacher's output on, so layers train independently;
/// the loss is <c>mse_factor × mean over layers of MSE(hybrid, teacher)</c> on the per-head outputs before
/// <c>o_proj</c>, plus <c>xent_factor ×</c> the attention-row cross-entropy. Every token counts (labels are not used).
/// The LM head is never run. With <paramref name="layers"/> only those layers record (block-wise transfer).
/// </summary>
public sealed class AttentionTransferObjective(double mseFactor = AttentionTransferObjective.DefaultMseFactor,
    double xentFactor = 0, IReadOnlySet<int>? layers = null) : ITrainingObjective
{
    /// <summary>The reference's <c>mse_factor: 1000</c>.</summary>
    public const double DefaultMseFactor = 1000;

    public string Name => "attention transfer";

    public string Fingerprint => string.Create(CultureInfo.InvariantCulture,
        $"transfer|{mseFactor}|{xentFactor}|{(layers is null ? "all" : string.Join(",", layers.Order()))}");

    public Tensor Loss(LlamaForCausalLM model, IReadOnlyList<TrainingExample> batch)
    {
        var (ids, _) = ITrainingObjective.Tensors(batch);
        return Run(model, recorder => { using var scope = NewDisposeScope(); model.Model.forward(ids, null, null); });
    }

    /// <summary>Runs <paramref name="forward"/> with every transfer layer in transfer mode and returns the weighted loss.</summary>
    internal Tensor Run(LlamaForCausalLM model, Action<AttentionTransferRecorder> forward)
    {
        using var recorder = new AttentionTransferRecorder(xentFactor > 0, layers);
        var attached = Attach(model, recorder);
        try
        {
            forward(recorder);
            var (mse, xent) = recorder.Means();
            return mse.Times(mseFactor).Plus(xent.Times(xentFactor));

        }
        finally
        {
            foreach (var layer in attached)
                layer.Transfer = null;
        }
    }

    /// <summary>Puts every transfer layer of <paramref name="model"/> in transfer mode with <paramref name="recorder"/>;
    /// returns them (set <c>Transfer = null</c> to leave it).</summary>
    public static List<ITransferLayer> Attach(LlamaForCausalLM model, AttentionTransferRecorder recorder)
    {
        var attached = TransferLayers(model).ToList();
        if (attached.Count == 0)
            throw new LinearizeException($"attention transfer needs layers with parameters to learn: {HowToConvert}");
        foreach (var a in attached)
            a.Transfer = recorder;
        return attached;
    }

    /// <summary>The layers of <paramref name="model"/> that attention transfer trains: those that add parameters to the teacher.</summary>
    public static IEnumerable<ITransferLayer> TransferLayers(LlamaForCausalLM model) =>
        model.Model.Layers.Select(l => l.SelfAttention).OfType<ITransferLayer>().Where(a => a.TransferParameters.Any());

    /// <summary>What to convert with to get transfer layers, for error messages.</summary>
    public const string HowToConvert =
        "convert the teacher with --method lolcats-sw|lolcats-tk, a Liger method with --gate learned, or liger-gdn|liger-deltanet first";

    public long Weight(TrainingExample example) => example.InputIds.Length;

    public long TrainedTokens(TrainingExample example) => example.InputIds.Length;
}
