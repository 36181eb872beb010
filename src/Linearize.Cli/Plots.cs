namespace Linearize.Cli;

/// <summary>PNG plots (ScottPlot), written atomically.</summary>
public static class Plots
{
    /// <summary>One line; <paramref name="RightAxis"/> draws it against the right-hand y axis (a second unit).</summary>
    /// <param name="Markers">Draw a marker at every point, in a colour of its own, on top of the other lines (sparse
    /// series such as validation loss, which a dense training line would otherwise hide).</param>
    public sealed record Series(string Label, double[] Xs, double[] Ys, bool RightAxis = false, bool Markers = false);

    public static void Line(string path, string title, string xLabel, string yLabel, IReadOnlyList<Series> series,
        bool logX = false, string? rightYLabel = null, bool zeroBased = false)
    {
        var plot = new ScottPlot.Plot();
        foreach (var s in series.OrderBy(x => x.Markers)) // marked series last: drawn on top
        {
            var xs = logX ? s.Xs.Select(Math.Log2).ToArray() : s.Xs;
            var scatter = plot.Add.Scatter(xs, s.Ys);
            scatter.LegendText = s.Label;
            if (s.Markers)
            {
                scatter.Color = ScottPlot.Colors.OrangeRed;
                scatter.MarkerSize = 9;
                scatter.MarkerShape = ScottPlot.MarkerShape.FilledCircle;
                scatter.LineWidth = 2;
            }
            else if (series.Any(x => x.Markers))
                scatter.MarkerSize = 0;
            if (s.RightAxis)
            {
                scatter.Axes.YAxis = plot.Axes.Right;
                plot.Axes.Right.Label.Text = rightYLabel ?? "";
                plot.Axes.Right.Label.ForeColor = scatter.Color;
            }
            else if (series.Any(x => x.RightAxis))
                plot.Axes.Left.Label.ForeColor = scatter.Color;
        }

        // zeroBased: quantities like times and bytes start at zero, so that a flat line looks flat and ratios read true.
        foreach (var (axis, onRight) in new[] { (plot.Axes.Left, false), ((ScottPlot.IYAxis)plot.Axes.Right, true) })
        {
            var ys = series.Where(x => x.RightAxis == onRight).SelectMany(x => x.Ys).ToArray();
            if (zeroBased && ys.Length > 0 && ys.Min() >= 0 && ys.Max() > 0)
                plot.Axes.SetLimitsY(0, ys.Max() * 1.08, axis);
        }

        plot.Title(title);
        plot.Axes.Left.Label.Text = yLabel;
        plot.XLabel(logX ? xLabel + " (log scale)" : xLabel);
        if (logX)
        {
            // Ticks at the measured points, labelled with their real values rather than log2 of them.
            var ticks = series.SelectMany(s => s.Xs).Distinct().Order().ToArray();
            plot.Axes.Bottom.SetTicks(ticks.Select(Math.Log2).ToArray(), ticks.Select(x => x.ToString("N0")).ToArray());
        }

        // Outside the data area: whatever the curves do, the legend never hides a point.
        plot.ShowLegend(ScottPlot.Edge.Bottom);
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 800, 500);
        File.Move(tmp, path, overwrite: true);
    }
}
