using Linearize.Data;
using Linearize.Modeling.Llama;
using static TorchSharp.torch;

namespace Linearize.Training;

/// <summary>What <see cref="Trainer"/> minimises: next-token cross-entropy (<see cref="NextTokenObjective"/>) or
/// LoLCATs' attention transfer (<see cref="Distillation.AttentionTransferObjective"/>).</summary>
public interface ITrainingObjective
{
    /// <summary>A short name for metrics and reports, e.g. <c>cross-entropy</c>.</summary>
    string Name { get; }

    /// <summary>Everything about the objective a resumed run must share (part of the checkpoint fingerprint).</summary>
    string Fingerprint { get; }

    /// <summary>The mean loss of a micro-batch of equally long examples.</summary>
    Tensor Loss(LlamaForCausalLM model, IReadOnlyList<TrainingExample> batch);

    /// <summary>How much an example weighs in the validation mean (the tokens its loss averages over).</summary>
    long Weight(TrainingExample example);

    /// <summary>Tokens an example contributes to the throughput count (labelled tokens for next-token training).</summary>
    long TrainedTokens(TrainingExample example);

    /// <summary>Input ids and labels of a batch, <c>[B, T]</c> int64.</summary>
    static (Tensor Ids, Tensor Labels) Tensors(IReadOnlyList<TrainingExample> batch)
    {
        int t = batch[0].InputIds.Length;
        var ids = tensor(batch.SelectMany(b => b.InputIds.Select(i => (long)i)).ToArray()).view(batch.Count, t);
        var labels = tensor(batch.SelectMany(b => b.Labels.Select(i => (long)i)).ToArray()).view(batch.Count, t);
        return (ids, labels);
    }
}
