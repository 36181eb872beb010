using Linearize.Data;
using Linearize.Modeling.Llama;
using static TorchSharp.torch;

namespace Linearize.Training;

/// <summary>HF causal-LM loss: logits at t predict the label at t + 1; labels −100 are ignored.</summary>
public sealed class NextTokenObjective : ITrainingObjective
{
    public string Name => "cross-entropy";

    public string Fingerprint => "next-token";

    public Tensor Loss(LlamaForCausalLM model, IReadOnlyList<TrainingExample> batch)
    {
        var (ids, labels) = ITrainingObjective.Tensors(batch);
        long t = ids.shape[1];
        var logits = model.Forward(ids);
        var shifted = logits.narrow(1, 0, t - 1).reshape(-1, logits.shape[2]);
        var targets = labels.narrow(1, 1, t - 1).reshape(-1);
        return nn.functional.cross_entropy(shifted, targets, ignore_index: TrainingExample.IgnoreIndex);
    }

    public long Weight(TrainingExample example) => example.Labels.Skip(1).Count(l => l != TrainingExample.IgnoreIndex);

    public long TrainedTokens(TrainingExample example) => example.LabelledTokens;
}
