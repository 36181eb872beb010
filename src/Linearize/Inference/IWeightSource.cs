namespace Linearize.Inference;

/// <summary>
/// Where the engine reads a model's weights when it packs them, by Hugging Face name: a loaded model's parameters, or
/// a checkpoint read one tensor at a time (so nothing but the packed copy stays in memory).
/// </summary>
internal unsafe interface IWeightSource
{
    /// <summary>Where the weights come from, for errors.</summary>
    string Source { get; }

    IEnumerable<string> Names { get; }

    bool Contains(string name);

    /// <summary>Shape of tensor <paramref name="name"/> (which must exist).</summary>
    long[] Shape(string name);

    /// <summary>Tensor <paramref name="name"/> as float32 values in row-major order.</summary>
    float[] ReadFloats(string name);

    /// <summary>Elements <c>[offset, offset + destination.Length)</c> of tensor <paramref name="name"/> (row-major) as
    /// float32 values into <paramref name="destination"/>.</summary>
    void ReadInto(string name, long offset, Span<float> destination);

    /// <summary>True when tensor <paramref name="name"/> can be read as bfloat16 bit patterns as stored (no rounding).</summary>
    bool HasBFloat16(string name);

    /// <summary>Elements <c>[offset, offset + destination.Length)</c> as stored bfloat16 bit patterns (only where
    /// <see cref="HasBFloat16"/>).</summary>
    void ReadBFloat16Into(string name, long offset, Span<ushort> destination);

    /// <summary>The address of tensor <paramref name="name"/>'s stored bytes when they already are the engine's rows in
    /// <paramref name="format"/> (a mapped file's bfloat16 or float32 <c>[out, in]</c> matrix, or a q8 checkpoint's Q8
    /// rows, <see cref="PackedMatrix.Q8RowBytes"/> each), valid for as long as the
    /// source lives; null when the tensor must be packed (another dtype, q8 from a checkpoint that is not already q8
    /// (<see cref="Q8Checkpoint"/>), or a source that is not a file).</summary>
    void* MapInPlace(string name, WeightFormat format);
}
