using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Distcache.Compare;

/// <summary>Reads what bench/compare.sh left in a results directory and writes the Markdown report (tables and
/// ratios) and the SVG chart.</summary>
internal static partial class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static readonly string[] Scenarios = ["get90-p1", "add90-p1", "get90-p16", "add90-p16"];

    // The first three are driven by one generator (Distcache.Compare load) and give the main ratios; the last two
    // are each side's own tool, kept as a second opinion on how much the generator matters.
    private static readonly (string Key, string Label, string Color)[] Servers =
    [
        ("ours-gen", "dc_server (same-shape generator)", "#2b6cb0"),
        ("redis", "Redis (same-shape generator)", "#c53030"),
        ("memcached", "memcached (same-shape generator)", "#2f855a"),
        ("ours", "dc_server (dc_test -bench)", "#90cdf4"),
        ("rb", "Redis (redis-benchmark, composed)", "#f6ad55"),
    ];

    private const int SameGenerator = 3;

    public static int Run(string dir, string mdPath, string svgPath)
    {
        Dictionary<string, string> meta = File.ReadAllLines(Path.Combine(dir, "meta.txt"))
            .Where(l => l.Contains(' ', StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf(' ', StringComparison.Ordinal)], l => l[(l.IndexOf(' ', StringComparison.Ordinal) + 1)..]);
        var rows = new Dictionary<(string Scenario, string Server), Row>();
        foreach (string scenario in Scenarios)
        {
            rows[(scenario, "ours")] = Row.FromJson(Path.Combine(dir, $"{scenario}.ours.json"));
            rows[(scenario, "ours-gen")] = Row.FromJson(Path.Combine(dir, $"{scenario}.ours-gen.json"));
            rows[(scenario, "redis")] = Row.FromJson(Path.Combine(dir, $"{scenario}.redis.json"));
            rows[(scenario, "memcached")] = Row.FromJson(Path.Combine(dir, $"{scenario}.memcached.json"));
            double getWeight = scenario.StartsWith("get90", StringComparison.Ordinal) ? 0.9 : 0.1;
            rows[(scenario, "rb")] = Row.Compose(RedisBenchmark.Parse(Path.Combine(dir, $"{scenario}.rb-get")), RedisBenchmark.Parse(Path.Combine(dir, $"{scenario}.rb-set")), getWeight);
        }

        var md = new StringBuilder();
        md.AppendLine(Inv, $"Date: {Get(meta, "date")}. Machine: {Get(meta, "machine")}. Built from: {Get(meta, "source")}.");
        md.AppendLine(Inv, $"Servers: {Get(meta, "versions")}. Shape: {Get(meta, "shape")}. Whole run: {Get(meta, "elapsed_s")} s.");
        md.AppendLine();
        md.AppendLine("| scenario | server (generator) | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | server cores | generator cores | GET hits / ADD stored |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (string scenario in Scenarios)
        {
            foreach ((string key, string label, _) in Servers)
            {
                Row r = rows[(scenario, key)];
                md.AppendLine(Inv, $"| {Describe(scenario)} | {label} | {r.OpsPerSec:N0} | {F(r.P50)} | {F(r.P99)} | {F(r.P999)} | {r.ServerUsPerOp:F2} | {r.ServerCores:F2} | {r.GeneratorCores:F2} | {r.Outcome} |");
            }
        }

        md.AppendLine();
        md.AppendLine("Ratios (ours / other), all three servers driven by the same generator (Distcache.Compare load, the \"same-shape generator\" rows): throughput above 1 means ours is faster; CPU per operation and p99 below 1 mean ours is cheaper / quicker.");
        md.AppendLine();
        md.AppendLine("| scenario | ops/s ours/Redis (same generator) | ops/s ours/memcached (same generator) | CPU/op ours/Redis (same generator) | CPU/op ours/memcached (same generator) | p99 ours/Redis (same generator) | p99 ours/memcached (same generator) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (string scenario in Scenarios)
        {
            Row o = rows[(scenario, "ours-gen")];
            Row r = rows[(scenario, "redis")];
            Row m = rows[(scenario, "memcached")];
            md.AppendLine(Inv, $"| {Describe(scenario)} | {o.OpsPerSec / r.OpsPerSec:F2} | {o.OpsPerSec / m.OpsPerSec:F2} | {o.ServerUsPerOp / r.ServerUsPerOp:F2} | {o.ServerUsPerOp / m.ServerUsPerOp:F2} | {o.P99 / r.P99:F2} | {o.P99 / m.P99:F2} |");
        }

        md.AppendLine();
        md.AppendLine("Secondary: dc_server driven by dc_test -bench against the same-shape generator's Redis and memcached rows, and against redis-benchmark (each side's own tool). The last column is what the generator alone changes for ours.");
        md.AppendLine();
        md.AppendLine("| scenario | ops/s ours (dc_test) / Redis (same-shape generator) | ops/s ours (dc_test) / Redis (redis-benchmark) | ops/s ours (dc_test) / memcached (same-shape generator) | CPU/op ours (dc_test) / Redis (same-shape generator) | CPU/op ours (dc_test) / Redis (redis-benchmark) | CPU/op ours (dc_test) / memcached (same-shape generator) | p99 ours (dc_test) / Redis (same-shape generator) | p99 ours (dc_test) / memcached (same-shape generator) | ops/s ours: dc_test / same-shape generator |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (string scenario in Scenarios)
        {
            Row o = rows[(scenario, "ours")];
            Row g = rows[(scenario, "ours-gen")];
            Row r = rows[(scenario, "redis")];
            Row b = rows[(scenario, "rb")];
            Row m = rows[(scenario, "memcached")];
            md.AppendLine(Inv, $"| {Describe(scenario)} | {o.OpsPerSec / r.OpsPerSec:F2} | {o.OpsPerSec / b.OpsPerSec:F2} | {o.OpsPerSec / m.OpsPerSec:F2} | {o.ServerUsPerOp / r.ServerUsPerOp:F2} | {o.ServerUsPerOp / b.ServerUsPerOp:F2} | {o.ServerUsPerOp / m.ServerUsPerOp:F2} | {o.P99 / r.P99:F2} | {o.P99 / m.P99:F2} | {o.OpsPerSec / g.OpsPerSec:F2} |");
        }

        // Memory per stored session.
        var memory = File.ReadAllLines(Path.Combine(dir, "memory.txt")).Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .ToDictionary(f => f[0], f => (Count: long.Parse(f[1], Inv), Empty: long.Parse(f[2], Inv), Full: long.Parse(f[3], Inv)));
        double PerSession(string k) => (memory[k].Full - memory[k].Empty) * 1024.0 / memory[k].Count;
        md.AppendLine();
        md.AppendLine("| server | sessions stored | RSS empty | RSS full | resident bytes per session | ours / this |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (string k in new[] { "ours", "redis", "memcached" })
        {
            (long count, long empty, long full) = memory[k];
            md.AppendLine(Inv, $"| {(k == "ours" ? "dc_server" : k == "redis" ? "Redis" : "memcached")} | {count:N0} | {empty / 1024.0:F1} MiB | {full / 1024.0:F1} MiB | {PerSession(k):F0} | {PerSession("ours") / PerSession(k):F2} |");
        }

        // GET throughput against the number of stored sessions: ours and Redis through the same generator, ours
        // through dc_test as well. Counts come from dc_test's files (scale-N.json); the others are shown where present.
        long[] counts = Directory.GetFiles(dir, "scale-*.json").Select(f => long.Parse(Path.GetFileNameWithoutExtension(f)[6..], Inv)).Order().ToArray();
        // Round 1 is PREFIXscale-N.json, round r PREFIXscale-N.rR.json; a row is the median of its rounds.
        Row[] ScaleRounds(string prefix, long count)
        {
            var files = new List<string> { Path.Combine(dir, $"{prefix}scale-{count}.json") };
            for (int r = 2; File.Exists(Path.Combine(dir, $"{prefix}scale-{count}.r{r}.json")); r++)
            {
                files.Add(Path.Combine(dir, $"{prefix}scale-{count}.r{r}.json"));
            }

            return files.Where(File.Exists).Select(Row.FromJson).ToArray();
        }

        Row? ScaleRow(string prefix, long count) => ScaleRounds(prefix, count) is { Length: > 0 } rounds ? Row.Median(rounds) : null;
        var scale = counts.Select(c => new ScalePoint(c, ScaleRow("ours-gen-", c), ScaleRow("redis-", c), ScaleRow(string.Empty, c)!)).ToArray();
        int scaleRounds = counts.Length > 0 ? ScaleRounds("ours-gen-", counts[0]).Length : 0;
        md.AppendLine();
        md.AppendLine("| GET only, 50 × 16 in flight | stored sessions | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | generator cores | GET hits |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach ((string label, Func<ScalePoint, Row?> pick) in new (string, Func<ScalePoint, Row?>)[] { (Servers[0].Label, p => p.OursSameGenerator), (Servers[1].Label, p => p.Redis), (Servers[3].Label, p => p.OursDcTest) })
        {
            foreach (ScalePoint point in scale)
            {
                if (pick(point) is Row r)
                {
                    md.AppendLine(Inv, $"| {label} | {point.Count:N0} | {r.OpsPerSec:N0} | {F(r.P50)} | {F(r.P99)} | {F(r.P999)} | {r.ServerUsPerOp:F2} | {r.GeneratorCores:F2} | {r.Outcome} |");
                }
            }
        }

        if (scale.Length == 2)
        {
            (ScalePoint small, ScalePoint large) = (scale[0], scale[1]);
            string at = $"at {large.Count:N0} / at {small.Count:N0} sessions";
            md.AppendLine();
            if (small.OursSameGenerator is Row os && large.OursSameGenerator is Row ol && small.Redis is Row rs && large.Redis is Row rl)
            {
                md.AppendLine(Inv, $"Same generator, GET throughput {at}: ours {ol.OpsPerSec / os.OpsPerSec:F2}, Redis {rl.OpsPerSec / rs.OpsPerSec:F2}; server CPU per GET: ours {ol.ServerUsPerOp / os.ServerUsPerOp:F2}, Redis {rl.ServerUsPerOp / rs.ServerUsPerOp:F2}. Ours / Redis at {large.Count:N0}: {ol.OpsPerSec / rl.OpsPerSec:F2} in throughput, {ol.ServerUsPerOp / rl.ServerUsPerOp:F2} in CPU per GET; at {small.Count:N0}: {os.OpsPerSec / rs.OpsPerSec:F2} and {os.ServerUsPerOp / rs.ServerUsPerOp:F2}.");
                if (scaleRounds > 1)
                {
                    // Each round ran the two store sizes back to back, so its own ratio shares its minutes' conditions.
                    string PerRound(string prefix)
                    {
                        Row[] l = ScaleRounds(prefix, large.Count);
                        Row[] sm = ScaleRounds(prefix, small.Count);
                        return string.Join(", ", l.Zip(sm, (a, b) => (a.OpsPerSec / b.OpsPerSec).ToString("F2", Inv)));
                    }

                    md.AppendLine();
                    md.AppendLine(Inv, $"Figures of the same generator's store-size rows are medians of {scaleRounds} rounds, each running the two sizes back to back. Throughput {at} round by round: ours {PerRound("ours-gen-")}; Redis {PerRound("redis-")}.");
                    md.AppendLine();
                }
            }

            md.AppendLine(Inv, $"dc_test -bench (secondary), ours {at}: {large.OursDcTest.OpsPerSec / small.OursDcTest.OpsPerSec:F2} in GET throughput, {large.OursDcTest.ServerUsPerOp / small.OursDcTest.ServerUsPerOp:F2} in server CPU per GET; dc_test itself took {small.OursDcTest.GeneratorCores:F2} and {large.OursDcTest.GeneratorCores:F2} cores.");
        }

        // Latency under a paced (open-loop) GET load, largest store: at half of each server's maximum, ours at Redis's
        // rate, and both at a low rate, which shows what the machine adds whatever the server.
        var paced = new (string File, string Label)[]
        {
            ("half-load", "dc_server (dc_test -rate), half of dc_test's maximum"),
            ("paced-half.ours", "dc_server (same generator), half of its maximum"),
            ("paced-half.redis", "Redis (same generator), half of its maximum"),
            ("paced-redis-half.ours", "dc_server (same generator), at Redis's half-load rate"),
            ("paced-low.ours", "dc_server (same generator), low rate"),
            ("paced-low.redis", "Redis (same generator), low rate"),
        };
        if (scale.Length > 0 && paced.Any(p => File.Exists(Path.Combine(dir, p.File + ".json"))))
        {
            md.AppendLine();
            md.AppendLine(Inv, $"| GET only, paced, 50 connections, at most 16 in flight, {scale[^1].Count:N0} stored sessions | offered ops/s | answered ops/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU µs/op | server cores | generator cores |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach ((string file, string label) in paced)
            {
                string path = Path.Combine(dir, file + ".json");
                if (File.Exists(path))
                {
                    Row r = Row.FromJson(path);
                    md.AppendLine(Inv, $"| {label} | {OfferedRate(path):N0} | {r.OpsPerSec:N0} | {F(r.P50)} | {F(r.P99)} | {F(r.P999)} | {F(r.Max)} | {r.ServerUsPerOp:F2} | {r.ServerCores:F2} | {r.GeneratorCores:F2} |");
                }
            }
        }

        File.WriteAllText(mdPath, md.ToString());
        File.WriteAllText(svgPath, Svg(rows, memory.ToDictionary(kv => kv.Key, kv => PerSession(kv.Key)), scale));
        Console.Write(md.ToString());
        return 0;
    }

    private static string Get(Dictionary<string, string> meta, string key) => meta.TryGetValue(key, out string? v) ? v.Trim() : "?";

    /// <summary>The "rate" a paced run was asked for (dc_test -rate and the generator's -rate both record it).</summary>
    private static double OfferedRate(string jsonPath)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
        return doc.RootElement.TryGetProperty("rate", out JsonElement rate) ? rate.GetDouble() : double.NaN;
    }

    private static string F(double? v) => v is { } x ? x.ToString(x >= 100 ? "F0" : "F1", Inv) : "n/a";

    private static string Describe(string scenario) =>
        (scenario.StartsWith("get90", StringComparison.Ordinal) ? "GET-heavy 90/10" : "ADD-heavy 10/90") + ", 50 × " + scenario[(scenario.LastIndexOf('p') + 1)..];

    private static string Svg(Dictionary<(string, string), Row> rows, Dictionary<string, double> memory, ScalePoint[] scale)
    {
        const int width = 960;
        var svg = new StringBuilder();
        int height = (4 * 300) + 80;
        svg.AppendLine(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.AppendLine(Inv, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        svg.AppendLine("<text x=\"20\" y=\"24\" font-size=\"16\" font-weight=\"bold\">dc_server vs Redis vs memcached: 50 connections, 1000-byte values, 32-byte keys, loopback</text>");

        // Legend: the same-generator servers on the first line, each side's own tool on the second.
        for (int i = 0; i < Servers.Length; i++)
        {
            int x = 20 + ((i < SameGenerator ? i : i - SameGenerator) * 235);
            int y = i < SameGenerator ? 36 : 54;
            svg.AppendLine(Inv, $"<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{Servers[i].Color}\"/><text x=\"{x + 16}\" y=\"{y + 10}\">{Escape(Servers[i].Label)}</text>");
        }

        string[] groups = Scenarios.Select(Describe).ToArray();
        string[] colors = Servers.Select(v => v.Color).ToArray();
        double[][] ops = Scenarios.Select(s => Servers.Select(v => rows[(s, v.Key)].OpsPerSec).ToArray()).ToArray();
        double[][] cpu = Scenarios.Select(s => Servers.Select(v => rows[(s, v.Key)].ServerUsPerOp).ToArray()).ToArray();
        Panel(svg, 80, "Throughput (operations per second, higher is better)", groups, ops, colors, "F0");
        Panel(svg, 380, "Server CPU time per operation (µs, /proc/PID/stat utime+stime; lower is better)", groups, cpu, colors, "F2");

        // The main ratios, all three servers through the same generator.
        string[] ratioLegend = ["ops/s ours/Redis", "ops/s ours/memcached", "CPU/op ours/Redis", "CPU/op ours/memcached"];
        string[] ratioColors = [Servers[1].Color, Servers[2].Color, "#feb2b2", "#9ae6b4"];
        double[][] ratios = Scenarios.Select(s =>
        {
            Row o = rows[(s, "ours-gen")], r = rows[(s, "redis")], m = rows[(s, "memcached")];
            return new[] { o.OpsPerSec / r.OpsPerSec, o.OpsPerSec / m.OpsPerSec, o.ServerUsPerOp / r.ServerUsPerOp, o.ServerUsPerOp / m.ServerUsPerOp };
        }).ToArray();
        Panel(svg, 680, "Ours / other with the same generator (throughput above 1 and CPU per operation below 1 favour ours)", groups, ratios, ratioColors, "F2", ratioLegend, reference: 1);

        string[] lower = ["Resident bytes per stored session (lower is better)", .. scale.Select(p => $"GET ops/s at {p.Count:N0} sessions")];
        double[][] lowerValues = [[memory["ours"], memory["redis"], memory["memcached"]], .. scale.Select(p => p.ChartBars().Select(b => b.Value).ToArray())];
        string[][] lowerColors = [[Servers[0].Color, Servers[1].Color, Servers[2].Color], .. scale.Select(p => p.ChartBars().Select(b => b.Color).ToArray())];
        PanelMixed(svg, 980, lower, lowerValues, lowerColors);
        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    private static void Panel(StringBuilder svg, int top, string title, string[] groups, double[][] values, string[] colors, string format, string[]? legend = null, double? reference = null)
    {
        const int left = 70, plotWidth = 870;
        int plotHeight = legend is null ? 220 : 204;
        double max = values.SelectMany(v => v).Append(reference ?? 0).DefaultIfEmpty(1).Max() * 1.15;
        svg.AppendLine(Inv, $"<text x=\"20\" y=\"{top + 14}\" font-weight=\"bold\">{Escape(title)}</text>");
        for (int i = 0; legend is not null && i < legend.Length; i++)
        {
            int x = left + (i * 170);
            svg.AppendLine(Inv, $"<rect x=\"{x}\" y=\"{top + 22}\" width=\"12\" height=\"12\" fill=\"{colors[i]}\"/><text x=\"{x + 16}\" y=\"{top + 32}\">{Escape(legend[i])}</text>");
        }

        int baseY = top + (legend is null ? 24 : 40) + plotHeight;
        for (int t = 0; t <= 4; t++)
        {
            double v = max * t / 4;
            double y = baseY - (plotHeight * t / 4.0);
            svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{left + plotWidth}\" y2=\"{y:F1}\" stroke=\"#ddd\"/><text x=\"{left - 6}\" y=\"{y + 4:F1}\" text-anchor=\"end\" fill=\"#555\">{v.ToString(v >= 100 ? "N0" : v >= 10 ? "F1" : "F2", Inv)}</text>");
        }

        double groupWidth = plotWidth / (double)groups.Length;
        double barWidth = (groupWidth - 30) / colors.Length;
        for (int g = 0; g < groups.Length; g++)
        {
            double gx = left + (g * groupWidth) + 15;
            for (int s = 0; s < values[g].Length; s++)
            {
                double h = plotHeight * values[g][s] / max;
                double x = gx + (s * barWidth);
                svg.AppendLine(Inv, $"<rect x=\"{x:F1}\" y=\"{baseY - h:F1}\" width=\"{barWidth - 3:F1}\" height=\"{h:F1}\" fill=\"{colors[s]}\"/><text x=\"{x + ((barWidth - 3) / 2):F1}\" y=\"{baseY - h - 3:F1}\" text-anchor=\"middle\" font-size=\"10\">{values[g][s].ToString(format, Inv)}</text>");
            }

            svg.AppendLine(Inv, $"<text x=\"{gx + ((groupWidth - 30) / 2):F1}\" y=\"{baseY + 16}\" text-anchor=\"middle\">{Escape(groups[g])}</text>");
        }

        if (reference is double line)
        {
            double y = baseY - (plotHeight * line / max);
            svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{left + plotWidth}\" y2=\"{y:F1}\" stroke=\"#333\" stroke-dasharray=\"6 4\"/>");
        }

        svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{baseY}\" x2=\"{left + plotWidth}\" y2=\"{baseY}\" stroke=\"#333\"/>");
    }

    // The lower panel: memory per session (three servers) and GET rates at two store sizes, each group on its own scale.
    private static void PanelMixed(StringBuilder svg, int top, string[] titles, double[][] values, string[][] colors)
    {
        const int left = 70, plotWidth = 870, plotHeight = 200;
        int baseY = top + 24 + plotHeight;
        svg.AppendLine(Inv, $"<text x=\"20\" y=\"{top + 14}\" font-weight=\"bold\">Memory per session, and GET throughput at two store sizes with the same generator (each group on its own scale)</text>");
        double groupWidth = plotWidth / (double)titles.Length;
        double opsMax = values.Skip(1).SelectMany(v => v).DefaultIfEmpty(1).Max() * 1.15;
        for (int g = 0; g < titles.Length; g++)
        {
            double max = g == 0 ? values[0].Max() * 1.15 : opsMax;
            double gx = left + (g * groupWidth) + 15;
            double barWidth = Math.Min(80, (groupWidth - 30) / Math.Max(1, values[g].Length));
            for (int s = 0; s < values[g].Length; s++)
            {
                double h = plotHeight * values[g][s] / max;
                double x = gx + (s * barWidth);
                svg.AppendLine(Inv, $"<rect x=\"{x:F1}\" y=\"{baseY - h:F1}\" width=\"{barWidth - 3:F1}\" height=\"{h:F1}\" fill=\"{colors[g][s]}\"/><text x=\"{x + ((barWidth - 3) / 2):F1}\" y=\"{baseY - h - 3:F1}\" text-anchor=\"middle\" font-size=\"10\">{values[g][s]:F0}</text>");
            }

            svg.AppendLine(Inv, $"<text x=\"{gx}\" y=\"{baseY + 16}\" font-size=\"11\">{Escape(titles[g])}</text>");
        }

        svg.AppendLine(Inv, $"<line x1=\"{left}\" y1=\"{baseY}\" x2=\"{left + plotWidth}\" y2=\"{baseY}\" stroke=\"#333\"/>");
    }

    private static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal);

    /// <summary>One store size of the GET-only runs: ours and Redis through the same generator (absent in results
    /// from before that run existed), ours through dc_test.</summary>
    internal sealed record ScalePoint(long Count, Row? OursSameGenerator, Row? Redis, Row OursDcTest)
    {
        /// <summary>The bars the chart draws: ours through the same generator (dc_test where that run is missing),
        /// then Redis.</summary>
        public (double Value, string Color)[] ChartBars()
        {
            var bars = new List<(double, string)>
            {
                OursSameGenerator is Row o ? (o.OpsPerSec, Servers[0].Color) : (OursDcTest.OpsPerSec, Servers[3].Color),
            };
            if (Redis is Row r)
            {
                bars.Add((r.OpsPerSec, Servers[1].Color));
            }

            return [.. bars];
        }
    }

    internal sealed record Row(double OpsPerSec, double? P50, double? P99, double? P999, double ServerUsPerOp, double ServerCores, double GeneratorCores, string Outcome)
    {
        public double? Max { get; init; }

        public static Row FromJson(string path)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = doc.RootElement;
            JsonElement lat = root.GetProperty("latency_us");
            JsonElement cpu = root.GetProperty("cpu");
            double duration = root.GetProperty("duration_s").GetDouble();
            JsonElement get = root.GetProperty("by_operation").GetProperty("get");
            JsonElement add = root.GetProperty("by_operation").GetProperty("add");
            static string Share(JsonElement e) => e.GetProperty("count").GetInt64() == 0 ? "-" : (100.0 * e.GetProperty("hits").GetInt64() / e.GetProperty("count").GetInt64()).ToString("F0", Inv) + "%";
            return new Row(
                root.GetProperty("ops_per_sec").GetDouble(),
                lat.GetProperty("p50").GetDouble(),
                lat.GetProperty("p99").GetDouble(),
                lat.GetProperty("p99_9").GetDouble(),
                cpu.GetProperty("server_us_per_op").GetDouble(),
                cpu.GetProperty("server_s").GetDouble() / duration,
                cpu.GetProperty("client_s").GetDouble() / duration,
                $"{Share(get)} / {Share(add)}")
            {
                Max = lat.TryGetProperty("max", out JsonElement max) ? max.GetDouble() : null,
            };
        }

        /// <summary>Each figure the median of the rounds' (the upper middle one for an even count).</summary>
        public static Row Median(IReadOnlyList<Row> rounds)
        {
            static double M(IEnumerable<double> values)
            {
                double[] sorted = values.Order().ToArray();
                return sorted[sorted.Length / 2];
            }

            static double? MN(IEnumerable<double?> values) => values.All(v => v.HasValue) ? M(values.Select(v => v!.Value)) : null;
            return new Row(M(rounds.Select(r => r.OpsPerSec)), MN(rounds.Select(r => r.P50)), MN(rounds.Select(r => r.P99)), MN(rounds.Select(r => r.P999)),
                M(rounds.Select(r => r.ServerUsPerOp)), M(rounds.Select(r => r.ServerCores)), M(rounds.Select(r => r.GeneratorCores)), rounds[0].Outcome)
            {
                Max = MN(rounds.Select(r => r.Max)),
            };
        }

        /// <summary>redis-benchmark runs one command per test: the mix's rate is the weighted harmonic mean of the
        /// two tests' rates (the time per operation is the weighted mean), CPU per operation the weighted mean;
        /// latency percentiles cannot be merged without the histograms, so they are the dominant operation's.</summary>
        public static Row Compose(RedisBenchmark get, RedisBenchmark set, double getWeight)
        {
            double addWeight = 1 - getWeight;
            double rate = 1 / ((getWeight / get.OpsPerSec) + (addWeight / set.OpsPerSec));
            double cpu = (getWeight * get.ServerSeconds / get.Requests) + (addWeight * set.ServerSeconds / set.Requests);
            RedisBenchmark main = getWeight >= 0.5 ? get : set;
            double wall = get.Seconds + set.Seconds;
            return new Row(rate, main.P50, main.P99, main.P999, cpu * 1e6, (get.ServerSeconds + set.ServerSeconds) / wall,
                (get.GeneratorSeconds + set.GeneratorSeconds) / wall, $"not reported (latency: {(getWeight >= 0.5 ? "GET" : "SET NX")} test)");
        }
    }

    internal sealed partial record RedisBenchmark(long Requests, double Seconds, double OpsPerSec, double P50, double P99, double P999, double ServerSeconds, double GeneratorSeconds)
    {
        public static RedisBenchmark Parse(string stem)
        {
            string text = File.ReadAllText(stem + ".txt").Replace('\r', '\n');
            Match done = Completed().Match(text);
            Match rate = Throughput().Match(text);
            if (!done.Success || !rate.Success)
            {
                throw new InvalidOperationException($"{stem}.txt is not a redis-benchmark report");
            }

            // "Summary" block: a header line "avg min p50 p95 p99 max" and a line of values in milliseconds.
            string[] lines = text.Split('\n');
            int header = Array.FindIndex(lines, l => l.Trim().StartsWith("avg", StringComparison.Ordinal) && l.Contains("p99", StringComparison.Ordinal));
            string[] names = lines[header].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            double[] ms = lines[header + 1].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(v => double.Parse(v, Inv)).ToArray();
            double Summary(string name) => ms[Array.IndexOf(names, name)] * 1000;

            // p99.9: the first step of the "Latency by percentile distribution" at or above 99.9%.
            double p999 = double.NaN;
            int from = Array.FindIndex(lines, l => l.StartsWith("Latency by percentile", StringComparison.Ordinal));
            for (int i = from + 1; from >= 0 && i < lines.Length; i++)
            {
                Match m = Percentile().Match(lines[i]);
                if (!m.Success)
                {
                    break;
                }

                if (double.Parse(m.Groups[1].Value, Inv) >= 99.9)
                {
                    p999 = double.Parse(m.Groups[2].Value, Inv) * 1000;
                    break;
                }
            }

            // The .times file: bash's `times` (shell, then children = redis-benchmark), then the server's CPU before/after.
            string[] times = File.ReadAllLines(stem + ".times");
            double generator = times[1].Split(' ').Sum(ParseBashTime);
            string[] cpu = times.First(l => l.StartsWith("server_cpu_s", StringComparison.Ordinal)).Split(' ');
            double server = double.Parse(cpu[2], Inv) - double.Parse(cpu[1], Inv);
            return new RedisBenchmark(long.Parse(done.Groups[1].Value, Inv), double.Parse(done.Groups[2].Value, Inv), double.Parse(rate.Groups[1].Value, Inv),
                Summary("p50"), Summary("p99"), p999, server, generator);
        }

        private static double ParseBashTime(string t)
        {
            // "1m2.345s"
            int m = t.IndexOf('m', StringComparison.Ordinal);
            return (double.Parse(t[..m], Inv) * 60) + double.Parse(t[(m + 1)..].TrimEnd('s'), Inv);
        }

        [GeneratedRegex(@"(\d+) requests completed in ([\d.]+) seconds")]
        private static partial Regex Completed();

        [GeneratedRegex(@"throughput summary: ([\d.]+) requests per second")]
        private static partial Regex Throughput();

        [GeneratedRegex(@"^\s*([\d.]+)% <= ([\d.]+) milliseconds")]
        private static partial Regex Percentile();
    }
}
