using Linearize;
using Linearize.Inference;

namespace Linearize.Tests.Inference;

/// <summary>The vectorized bfloat16 → float32 widening (what prefill does to each bfloat16 row) is the scalar rule, bit
/// for bit, over every bit pattern class (NaNs, infinities, subnormals) and lengths around each vector width.</summary>
public sealed class BFloat16WideningTests
{
    [Fact]
    public void WideningEqualsScalarRule()
    {
        var random = new Random(5);
        foreach (int length in new[] { 0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257 })
        {
            var bits = Enumerable.Range(0, length).Select(_ => (ushort)random.Next(ushort.MaxValue + 1)).ToArray();
            var widened = new float[length];
            BFloat16Bits.Widen(bits, widened);
            for (int i = 0; i < length; i++)
                Assert.Equal(BitConverter.SingleToUInt32Bits(PackedMatrix.FromBFloat16(bits[i])), BitConverter.SingleToUInt32Bits(widened[i]));
        }
    }
}
