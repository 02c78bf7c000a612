using System.Text;

namespace Distcache.Compare;

/// <summary>The SVG chart of the loadgen figures: dc_server's ratios to each peer per shape, every target's
/// throughput and CPU per operation per shape, and memory and store size.</summary>
internal static partial class Report
{
    private const int ChartWidth = 960;
    private const int PanelHeight = 270;

    private static string Svg(Dictionary<string, string> meta, Shape[] shapes, SizeRow[] sizes, Dictionary<string, MemoryRow> memory)
    {
        var body = new StringBuilder();
        int top = 56;
        (string, string)[] peerLegend = Peers.Select(p => (Label(p), Color(p))).ToArray();
        string[] peerColors = Peers.Select(Color).ToArray();

        RatioRow[] ratios = RatioRows(shapes);
        if (ratios.Length > 0)
        {
            string[] groups = ratios.Select(r => r.Ours == "dc_server" ? r.Shape : $"{r.Shape} via dc_client").ToArray();
            Panel(body, top, "Throughput, dc_server ÷ peer (above 1: dc_server does more operations per second)", groups,
                ratios.Select(r => r.Throughput).ToArray(), [.. ratios.Select(_ => peerColors)], peerLegend, perGroupScale: false, "F2", reference: 1);
            top += PanelHeight;
            Panel(body, top, "Server CPU per operation, dc_server ÷ peer (below 1: dc_server spends less)", groups,
                ratios.Select(r => r.Cpu).ToArray(), [.. ratios.Select(_ => peerColors)], peerLegend, perGroupScale: false, "F2", reference: 1);
            top += PanelHeight;

            // Absolute figures: every target present in a shape, in Targets' order.
            (string, string)[] targetLegend = Targets.Select(t => (t.Label, t.Color)).ToArray();
            string[] names = shapes.Select(s => s.Name).ToArray();
            (string Key, string Label, string Color)[][] present = shapes.Select(s => Targets.Where(t => s.Runs.ContainsKey(t.Key)).ToArray()).ToArray();
            string[][] colors = present.Select(p => p.Select(t => t.Color).ToArray()).ToArray();
            Panel(body, top, "Throughput by shape, operations per second (each shape on its own scale)", names,
                shapes.Select((s, i) => present[i].Select(t => s.Runs[t.Key].OpsPerSec).ToArray()).ToArray(), colors, targetLegend, perGroupScale: true, "compact");
            top += PanelHeight;
            Panel(body, top, "Server CPU µs per operation by shape (dc_client → dc_server: both processes; each shape on its own scale)", names,
                shapes.Select((s, i) => present[i].Select(t => s.Runs[t.Key].ServerUsPerOp).ToArray()).ToArray(), colors, targetLegend, perGroupScale: true, "us");
            top += PanelHeight;
        }

        if (memory.Count > 0 || sizes.Length > 0)
        {
            var groups = new List<string>();
            var values = new List<double[]>();
            var colors = new List<string[]>();
            (string Kind, string Target)[] withMemory = Kinds.Where(k => memory.ContainsKey(k.Kind)).ToArray();
            if (withMemory.Length > 0)
            {
                groups.Add("resident bytes per stored session");
                values.Add(withMemory.Select(k => memory[k.Kind].PerSession).ToArray());
                colors.Add(withMemory.Select(k => Color(k.Target)).ToArray());
            }

            for (int i = 0; sizes.Length > 0 && i < sizes[0].Counts.Length; i++)
            {
                groups.Add($"GET ops/s, {sizes[0].Counts[i].ToString("N0", Inv)} stored");
                values.Add(sizes.Select(r => r.At[i].OpsPerSec).ToArray());
                colors.Add(sizes.Select(r => Color(r.Target)).ToArray());
            }

            (string, string)[] legend = Kinds.Select(k => (Label(k.Target), Color(k.Target))).ToArray();
            Panel(body, top, "Memory per session (lower is better) and GET throughput at two store sizes, 50 × 16 (each group on its own scale)",
                [.. groups], [.. values], [.. colors], legend, perGroupScale: true, "compact");
            top += PanelHeight;
        }

        int height = top + 10;
        var svg = new StringBuilder();
        svg.AppendLine(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{ChartWidth}\" height=\"{height}\" viewBox=\"0 0 {ChartWidth} {height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.AppendLine(Inv, $"<rect width=\"{ChartWidth}\" height=\"{height}\" fill=\"white\"/>");
        svg.AppendLine("<text x=\"20\" y=\"24\" font-size=\"16\" font-weight=\"bold\">dc_server beside Redis, memcached and Garnet, all driven by bench/loadgen on loopback</text>");
        svg.AppendLine(Inv, $"<text x=\"20\" y=\"42\" fill=\"#555\">{Escape($"{Get(meta, "date")}; {Get(meta, "machine")}; {Get(meta, "source")}; medians of {Setting(meta, "loadgen", "rounds")} round(s)")}</text>");
        svg.Append(body);
        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    /// <summary>A bar chart: one group per label, its bars side by side (NaN: no bar), on one scale or on one per
    /// group; a dashed line at the reference value if given.</summary>
    private static void Panel(StringBuilder svg, int top, string title, string[] groups, double[][] values, string[][] colors,
        (string Label, string Color)[] legend, bool perGroupScale, string format, double? reference = null)
    {
        const int left = 60, plotWidth = 880, plotHeight = 180;
        svg.AppendLine(Inv, $"<text x=\"20\" y=\"{top + 14}\" font-weight=\"bold\">{Escape(title)}</text>");
        int x0 = left;
        foreach ((string label, string color) in legend)
        {
            svg.AppendLine(Inv, $"<rect x=\"{x0}\" y=\"{top + 22}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{x0 + 16}\" y=\"{top + 32}\">{Escape(label)}</text>");
            x0 += 36 + (label.Length * 7);
        }

        int baseY = top + 48 + plotHeight;
        double Max(IEnumerable<double> v) => v.Where(x => !double.IsNaN(x) && !double.IsInfinity(x)).Append(reference ?? 0).DefaultIfEmpty(0).Max() is double m && m > 0 ? m * 1.18 : 1;
        double shared = Max(values.SelectMany(v => v));
        if (!perGroupScale)
        {
            for (int t = 0; t <= 4; t++)
            {
                double v = shared * t / 4;
                double y = baseY - (plotHeight * t / 4.0);
                svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{left + plotWidth}\" y2=\"{y:F1}\" stroke=\"#ddd\"/><text x=\"{left - 6}\" y=\"{y + 4:F1}\" text-anchor=\"end\" fill=\"#555\">{v.ToString("F2", Inv)}</text>");
            }
        }

        double groupWidth = plotWidth / (double)Math.Max(1, groups.Length);
        int most = values.Select(v => v.Count(x => !double.IsNaN(x))).DefaultIfEmpty(1).Max();
        double barWidth = Math.Min(48, (groupWidth - 16) / Math.Max(1, most));
        for (int g = 0; g < groups.Length; g++)
        {
            double max = perGroupScale ? Max(values[g]) : shared;
            int n = values[g].Count(x => !double.IsNaN(x));
            double gx = left + (g * groupWidth) + ((groupWidth - (n * barWidth)) / 2);
            int slot = 0;
            for (int s = 0; s < values[g].Length; s++)
            {
                double v = values[g][s];
                if (double.IsNaN(v))
                {
                    continue;
                }

                double h = double.IsInfinity(v) ? plotHeight : plotHeight * v / max;
                double x = gx + (slot++ * barWidth);
                svg.AppendLine(Inv, $"<rect x=\"{x:F1}\" y=\"{baseY - h:F1}\" width=\"{barWidth - 3:F1}\" height=\"{h:F1}\" fill=\"{colors[g][s]}\"/><text x=\"{x + ((barWidth - 3) / 2):F1}\" y=\"{baseY - h - 3:F1}\" text-anchor=\"middle\" font-size=\"9\">{Escape(FormatValue(v, format))}</text>");
            }

            svg.AppendLine(Inv, $"<text x=\"{left + (g * groupWidth) + (groupWidth / 2):F1}\" y=\"{baseY + 16}\" text-anchor=\"middle\" font-size=\"11\">{Escape(groups[g])}</text>");
        }

        if (reference is double line)
        {
            double y = baseY - (plotHeight * line / shared);
            svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{left + plotWidth}\" y2=\"{y:F1}\" stroke=\"#333\" stroke-dasharray=\"6 4\"/>");
        }

        svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{baseY}\" x2=\"{left + plotWidth}\" y2=\"{baseY}\" stroke=\"#333\"/>");
    }

    private static string FormatValue(double v, string format) => format switch
    {
        "compact" => v >= 1e6 ? (v / 1e6).ToString("F2", Inv) + "M" : v >= 1e4 ? (v / 1e3).ToString("F0", Inv) + "k" : v.ToString("F0", Inv),
        "us" => Us(v),
        _ => Ratio(v),
    };

    private static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal);
}
