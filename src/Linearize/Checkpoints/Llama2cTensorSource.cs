using Linearize.Checkpoints.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints;

/// <summary>
/// The tensors of a llama2.c <c>.bin</c> read one at a time where <see cref="Llama2cLayout"/> places them, each in
/// Hugging Face layout (q/k rows permuted from llama2.c's interleaved RoPE pairs): what a TorchSharp model loads from,
/// so building one holds the model plus a single tensor, not a second copy of every weight.
/// </summary>
public sealed class Llama2cTensorSource : StateDictLoader.ITensorSource
{
    private readonly string _path;
    private readonly Llama2cLayout _layout;

    /// <summary>Reads the header of <paramref name="path"/> (the weights are read by <see cref="Read"/>).</summary>
    public Llama2cTensorSource(string path)
    {
        _path = path;
        _layout = Llama2cCheckpoint.ReadLayout(path);
        Names = _layout.Names.ToList();
    }

    public LlamaConfig Config => _layout.Config;

    public string Description => _path;

    public IReadOnlyCollection<string> Names { get; }

    public long[] Shape(string name) => _layout.Locate(name).Shape;

    /// <summary>A new float32 tensor holding <paramref name="name"/> in HF layout.</summary>
    public Tensor Read(string name)
    {
        var (offset, shape) = _layout.Locate(name);
        var t = torch.empty(shape, ScalarType.Float32);
        try
        {
            if (t.numel() * sizeof(float) > int.MaxValue)
                throw new CheckpointFormatException(_path, $"{name}: tensors above 2 GB are not supported in llama2.c files");
            using (var stream = File.OpenRead(_path))
            {
                stream.Seek(offset, SeekOrigin.Begin);
                stream.ReadExactly(t.bytes);
            }

            if (!_layout.IsPermuted(name))
                return t;
            var permuted = Llama2cCheckpoint.InterleavedToRotateHalf(t, _layout.HeadsOf(name));
            t.Dispose();
            return permuted;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }
}
