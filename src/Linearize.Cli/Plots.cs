namespace Linearize.Cli;

/// <summary>PNG plots (ScottPlot), written atomically.</summary>
public static class Plots
{
    public sealed record Series(string Label, double[] Xs, double[] Ys);

    public static void Line(string path, string title, string xLabel, string yLabel, IEnumerable<Series> series, bool logX = false)
    {
        var plot = new ScottPlot.Plot();
        foreach (var s in series)
        {
            var xs = logX ? s.Xs.Select(Math.Log2).ToArray() : s.Xs;
            var scatter = plot.Add.Scatter(xs, s.Ys);
            scatter.LegendText = s.Label;
        }

        plot.Title(title);
        plot.XLabel(logX ? xLabel + " (log2)" : xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 800, 500);
        File.Move(tmp, path, overwrite: true);
    }
}
