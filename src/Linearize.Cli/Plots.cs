namespace Linearize.Cli;

/// <summary>PNG plots (ScottPlot), written atomically.</summary>
public static class Plots
{
    /// <summary>One line; <paramref name="RightAxis"/> draws it against the right-hand y axis (a second unit).</summary>
    /// <param name="Markers">Draw a marker at every point, on top of the other lines (sparse series such as validation
    /// loss, which a dense training line would otherwise hide; a single marked series gets a colour of its own).</param>
    public sealed record Series(string Label, double[] Xs, double[] Ys, bool RightAxis = false, bool Markers = false);

    /// <param name="integerX">The x values are counts (optimizer steps): ticks only at whole numbers, even for a short run.</param>
    public static void Line(string path, string title, string xLabel, string yLabel, IReadOnlyList<Series> series,
        bool logX = false, string? rightYLabel = null, bool zeroBased = false, bool integerX = false)
    {
        var plot = Build(title, xLabel, yLabel, series, logX, rightYLabel, zeroBased, integerX);
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 800, 500);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>The figure <see cref="Line"/> saves.</summary>
    public static ScottPlot.Plot Build(string title, string xLabel, string yLabel, IReadOnlyList<Series> series,
        bool logX = false, string? rightYLabel = null, bool zeroBased = false, bool integerX = false)
    {
        var plot = new ScottPlot.Plot();
        var axisColours = new Dictionary<bool, HashSet<ScottPlot.Color>> { [false] = new(), [true] = new() };
        bool twoAxes = series.Any(x => x.RightAxis);
        foreach (var s in series.OrderBy(x => x.Markers)) // marked series last: drawn on top
        {
            var xs = logX ? s.Xs.Select(Math.Log2).ToArray() : s.Xs;
            var scatter = plot.Add.Scatter(xs, s.Ys);
            scatter.LegendText = s.Label;
            if (s.Markers)
            {
                // One marked series over dense lines stands out in a colour of its own; several marked series (one per
                // model) keep the palette's, or every model would be drawn in the same colour.
                if (series.Count(x => x.Markers) == 1)
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
                scatter.LinePattern = ScottPlot.LinePattern.Dashed; // which axis a line belongs to, whatever its colour
            }

            axisColours[s.RightAxis].Add(scatter.Color);
        }

        // An axis title takes its line's colour only when one colour is drawn against it: with several models each
        // axis has several colours, and the title in any one of them would claim the others' lines.
        if (twoAxes)
            foreach (var (onRight, colours) in axisColours)
                if (colours.Count == 1)
                    (onRight ? plot.Axes.Right.Label : plot.Axes.Left.Label).ForeColor = colours.Single();

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
        else if (integerX)
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };

        // Outside the data area: whatever the curves do, the legend never hides a point.
        plot.ShowLegend(ScottPlot.Edge.Bottom);
        return plot;
    }
}
