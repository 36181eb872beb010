using Linearize.Checkpoints;
using Linearize.Data;
using Linearize.Modeling.Llama;
using static TorchSharp.torch;

namespace Linearize.Training.Distillation;

/// <summary>
/// Attention transfer of one block of layers <c>[From, To)</c> from the residual stream saved at its input boundary
/// (LoLCATs paper §3.3.2, reference <c>distill_mini_train.py</c>; docs/METHODS.md §2.7): each training example is looked up in
/// the boundary file by its index, the block's layers run on it in transfer mode, and the loss is the mean of the
/// block's layer MSEs (Eq. 8) times <c>mse_factor</c>. Nothing outside the block runs.
/// </summary>
public sealed class BlockTransferObjective : ITrainingObjective, IDisposable
{
    private readonly SafetensorsFile _inputs;
    private readonly Dictionary<TrainingExample, string> _rows;
    private readonly AttentionTransferObjective _inner;

    /// <param name="inputs">The boundary file: one tensor <c>[T, C]</c> per sequence, named <c>train.{i}</c> / <c>validation.{i}</c>.</param>
    public BlockTransferObjective(string inputs, IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation,
        int from, int to, double mseFactor, double xentFactor)
    {
        From = from;
        To = to;
        _inputs = SafetensorsFile.Open(inputs);
        _rows = new Dictionary<TrainingExample, string>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < train.Count; i++)
            _rows[train[i]] = $"train.{i}";
        for (int i = 0; i < validation.Count; i++)
            _rows[validation[i]] = $"validation.{i}";
        foreach (var name in _rows.Values)
            if (!_inputs.Tensors.ContainsKey(name))
                throw new LinearizeException($"{inputs}: no saved hidden state '{name}' (the inputs were prepared from other data; prepare them again)");
        _inner = new AttentionTransferObjective(mseFactor, xentFactor, Enumerable.Range(from, to - from).ToHashSet());
    }

    public int From { get; }

    public int To { get; }

    public string Name => "attention transfer (block)";

    public string Fingerprint => $"{_inner.Fingerprint}|block {From}-{To}";

    public Tensor Loss(LlamaForCausalLM model, IReadOnlyList<TrainingExample> batch)
    {
        var hidden = stack(batch.Select(e => _inputs.Read(_rows[e])).ToArray()).to(model.DType);
        return _inner.Run(model, _ => { using var scope = NewDisposeScope(); model.Model.ForwardLayers(hidden, From, To); });
    }

    public long Weight(TrainingExample example) => example.InputIds.Length;

    public long TrainedTokens(TrainingExample example) => example.InputIds.Length;

    public void Dispose() => _inputs.Dispose();
}
