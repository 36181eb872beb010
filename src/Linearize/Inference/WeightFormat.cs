namespace Linearize.Inference;

/// <summary>How the decode engine stores a weight matrix. Norms and recurrent states stay float32; so do activations,
/// except the inputs of <see cref="Q8"/> products.</summary>
public enum WeightFormat
{
    /// <summary>4 bytes per weight, exactly the model's values.</summary>
    Float32,

    /// <summary>2 bytes per weight: float32 rounded to nearest-even bfloat16 (torch's <c>.to(torch.bfloat16)</c>).</summary>
    BFloat16,

    /// <summary>
    /// 8-bit blocks in llama.cpp's Q8_0 layout: each run of <see cref="PackedMatrix.Q8BlockSize"/> weights of a row
    /// is stored as int8 <c>round(w / d)</c> with <c>d = max|w| / 127</c> (round half away from zero, as
    /// <c>ggml</c>'s <c>quantize_row_q8_0_ref</c>). Unlike Q8_0 the block scale is float32, not float16: 1.125 bytes per
    /// weight instead of 1.0625, and no second rounding of the scale. As in llama.cpp, a product with a Q8 matrix
    /// first quantizes its input rows to the same blocks and multiplies int8 by int8
    /// (<see cref="Kernels.Q8Activations"/>, <see cref="Kernels.MatVecQ8"/>): q8 rounds activations to 8 bits too.
    /// </summary>
    Q8,
}
