using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Inference;

/// <summary>The weights of a loaded TorchSharp model (its <c>state_dict</c>); the tensors stay the model's.</summary>
internal sealed unsafe class StateDictWeights(IDictionary<string, Tensor> state, string source) : IWeightSource
{
    public string Source { get; } = source;

    public IEnumerable<string> Names => state.Keys;

    public bool Contains(string name) => state.ContainsKey(name);

    public long[] Shape(string name) => state[name].shape;

    public float[] ReadFloats(string name) => Floats(state[name]);

    public bool HasBFloat16(string name) => false;

    public void ReadBFloat16Into(string name, long offset, Span<ushort> destination) =>
        throw new NotSupportedException("a loaded model's tensors are read as float32");

    /// <summary>Never in place: the model's tensors can be freed or trained while the engine runs.</summary>
    public void* MapInPlace(string name, WeightFormat format) => null;

    public void ReadInto(string name, long offset, Span<float> destination)
    {
        using var flat = state[name].detach().reshape(-1);
        using var part = flat.narrow(0, offset, destination.Length);
        using var f = part.to(ScalarType.Float32).contiguous();
        MemoryMarshal.Cast<byte, float>(f.bytes).CopyTo(destination);
    }

    internal static float[] Floats(Tensor t)
    {
        using var f = t.detach().to(ScalarType.Float32).contiguous();
        return MemoryMarshal.Cast<byte, float>(f.bytes).ToArray();
    }
}
