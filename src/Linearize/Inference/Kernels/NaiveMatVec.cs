namespace Linearize.Inference.Kernels;

/// <summary>The naive twin of <see cref="MatVec"/>: dequantize each row, then a plain double-precision dot product.</summary>
public static class NaiveMatVec
{
    /// <summary><c>y [count, rows] = x [count, cols] · Wᵀ</c> with every weight as the packed matrix stores it.</summary>
    public static float[] Multiply(PackedMatrix w, float[] x, int count)
    {
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
}
