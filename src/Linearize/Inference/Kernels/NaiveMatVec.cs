namespace Linearize.Inference.Kernels;

/// <summary>The naive twins of <see cref="MatVec"/> and <see cref="MatVecQ8"/>: plain double-precision dot products of
/// exactly the values the kernels multiply.</summary>
public static class NaiveMatVec
{
    /// <summary><c>y [count, rows] = x [count, cols] · Wᵀ</c> with every weight as the packed matrix stores it. For a
    /// <see cref="WeightFormat.Q8"/> matrix each activation row is first quantized to Q8 blocks (the rule of
    /// <see cref="PackedMatrix.QuantizeBlock"/>), and each block's int8 products are summed exactly then scaled by both
    /// blocks' scales, as <see cref="MatVecQ8"/> does.</summary>
    public static float[] Multiply(PackedMatrix w, float[] x, int count)
    {
        if (w.Format == WeightFormat.Q8)
            return MultiplyQ8(w, x, count);
        var y = new float[count * w.Rows];
        var row = new float[w.Cols];
        for (int r = 0; r < w.Rows; r++)
        {
            w.DequantizeRow(r, row);
            for (int b = 0; b < count; b++)
            {
                double s = 0;
                for (int c = 0; c < w.Cols; c++)
                    s += (double)row[c] * x[b * w.Cols + c];
                y[b * w.Rows + r] = (float)s;
            }
        }

        return y;
    }

    private static float[] MultiplyQ8(PackedMatrix w, float[] x, int count)
    {
        int cols = w.Cols, blocks = w.BlocksPerRow;
        const int size = PackedMatrix.Q8BlockSize;
        var xq = new sbyte[count * cols];
        var xd = new float[count * blocks];
        for (int b = 0; b < count; b++)
            for (int k = 0; k < blocks; k++)
            {
                int start = k * size, n = Math.Min(size, cols - start);
                xd[b * blocks + k] = PackedMatrix.QuantizeBlock(x.AsSpan(b * cols + start, n), xq.AsSpan(b * cols + start, n));
            }

        var wq = new sbyte[cols];
        var wd = new float[blocks];
        var y = new float[count * w.Rows];
        for (int r = 0; r < w.Rows; r++)
        {
            w.CopyQ8Row(r, wq, wd);
            for (int b = 0; b < count; b++)
            {
                double s = 0;
                for (int k = 0; k < blocks; k++)
                {
                    long block = 0;
                    for (int c = k * size; c < Math.Min(cols, (k + 1) * size); c++)
                        block += wq[c] * xq[b * cols + c];
                    s += block * ((double)wd[k] * xd[b * blocks + k]);
                }

                y[b * w.Rows + r] = (float)s;
            }
        }

        return y;
    }
}
