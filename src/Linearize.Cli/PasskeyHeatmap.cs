using Linearize.Evaluation.Passkey;

namespace Linearize.Cli;

/// <summary><c>eval passkey --plot</c>: accuracy as a length × depth heat map, each cell labelled, written atomically.</summary>
public static class PasskeyHeatmap
{
    public static void Write(string path, string title, PasskeyResult result)
    {
        var plot = Build(title, result);
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 200 + 110 * result.Depths.Count, 160 + 70 * result.Lengths.Count);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Depth across, length up (longest at the top); the colour scale is fixed to 0–100 % so that figures of
    /// different models compare.</summary>
    public static ScottPlot.Plot Build(string title, PasskeyResult result)
    {
        int rows = result.Lengths.Count, columns = result.Depths.Count;
        var values = new double[rows, columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                // Row 0 of the array is drawn at the top.
                var cell = result.Cell(result.Lengths[rows - 1 - r], result.Depths[c]);
                values[r, c] = cell.Samples == 0 ? double.NaN : cell.Accuracy * 100;
            }

        var plot = new ScottPlot.Plot();
        var heatmap = plot.Add.Heatmap(values);
        heatmap.Rectangle = new ScottPlot.CoordinateRect(0, columns, 0, rows);
        heatmap.ManualRange = new ScottPlot.Range(0, 100);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        var bar = plot.Add.ColorBar(heatmap);
        bar.Label = "exact match (%)";

        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                var cell = result.Cell(result.Lengths[r], result.Depths[c]);
                if (cell.Samples == 0)
                    continue;
                var text = plot.Add.Text($"{cell.Accuracy * 100:F0}%\n{cell.Correct}/{cell.Samples}", c + 0.5, r + 0.5);
                text.LabelAlignment = ScottPlot.Alignment.MiddleCenter;
                text.LabelFontSize = 13;
                // Light text on the dark (low) end of Viridis, dark text on its yellow end.
                text.LabelFontColor = cell.Accuracy > 0.6 ? ScottPlot.Colors.Black : ScottPlot.Colors.White;
            }

        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, columns).Select(c => c + 0.5).ToArray(),
            result.Depths.Select(d => d.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.Left.SetTicks(Enumerable.Range(0, rows).Select(r => r + 0.5).ToArray(),
            result.Lengths.Select(l => l.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.SetLimits(0, columns, 0, rows);
        plot.XLabel("needle depth (0 = start of the filler, 1 = just before the question)");
        plot.YLabel("sample length (tokens)");
        plot.Title(title);
        return plot;
    }
}
