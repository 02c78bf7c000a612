using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Distcache.Compare;

/// <summary>Reads what bench/compare.sh left in a results directory and writes the Markdown report and the SVG
/// chart: first the loadgen rounds (every server in every shape, medians over the rounds, dc_server's ratios to
/// each peer), then the store sizes and the memory per session, then the other generators' second opinions.
/// A section whose files are missing is left out, so a partial run still gets a report.</summary>
internal static partial class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The loadgen targets in table order: ours, then the peers dc_server's ratios are taken against.</summary>
    internal static readonly (string Key, string Label, string Color)[] Targets =
    [
        ("dc_server", "dc_server", "#2b6cb0"),
        ("dc_client", "dc_client → dc_server", "#63b3ed"),
        ("redis", "Redis", "#c53030"),
        ("memcached", "memcached", "#2f855a"),
        ("garnet", "Garnet", "#805ad5"),
    ];

    internal static readonly string[] Peers = ["redis", "memcached", "garnet"];

    /// <summary>compare.sh's server kinds (store sizes, memory) and the target each is reported as.</summary>
    internal static readonly (string Kind, string Target)[] Kinds = [("ours", "dc_server"), ("redis", "redis"), ("memcached", "memcached"), ("garnet", "garnet")];

    public static int Run(string dir, string mdPath, string svgPath)
    {
        Dictionary<string, string> meta = ReadMeta(dir);
        Shape[] shapes = Shape.ReadAll(dir);
        SizeRow[] sizes = SizeRow.ReadAll(dir);
        Dictionary<string, MemoryRow> memory = MemoryRow.ReadAll(dir);

        var md = new StringBuilder();
        Header(md, meta, shapes);
        MainSection(md, shapes);
        SizeSection(md, sizes, Setting(meta, "loadgen", "size_warmup"), Setting(meta, "loadgen", "duration"));
        MemorySection(md, memory);
        SecondOpinions(md, dir);

        File.WriteAllText(mdPath, md.ToString());
        File.WriteAllText(svgPath, Svg(meta, shapes, sizes, memory));
        Console.Write(md.ToString());
        return 0;
    }

    internal static string Label(string target) => Targets.First(t => t.Key == target).Label;

    internal static string Color(string target) => Targets.First(t => t.Key == target).Color;

    private static Dictionary<string, string> ReadMeta(string dir) =>
        File.ReadAllLines(Path.Combine(dir, "meta.txt"))
            .Where(l => l.Contains(' ', StringComparison.Ordinal))
            .GroupBy(l => l[..l.IndexOf(' ', StringComparison.Ordinal)])
            .ToDictionary(g => g.Key, g => g.Last()[(g.Key.Length + 1)..].Trim());

    private static string Get(Dictionary<string, string> meta, string key) => meta.TryGetValue(key, out string? v) ? v : "?";

    /// <summary>The value of NAME in a meta line of NAME=VALUE words.</summary>
    private static string Setting(Dictionary<string, string> meta, string line, string name) =>
        Get(meta, line).Split(' ').Select(w => w.Split('=')).Where(kv => kv.Length == 2 && kv[0] == name).Select(kv => kv[1]).FirstOrDefault() ?? "?";

    private static string Count(string number) => long.TryParse(number, NumberStyles.Integer, Inv, out long n) ? n.ToString("N0", Inv) : number;

    private static void Header(StringBuilder md, Dictionary<string, string> meta, Shape[] shapes)
    {
        md.AppendLine("# dc_server beside Redis, memcached and Garnet");
        md.AppendLine();
        md.AppendLine(Inv, $"- Date: {Get(meta, "date")}");
        md.AppendLine(Inv, $"- Machine: {Get(meta, "machine")}");
        md.AppendLine(Inv, $"- Command: `{Get(meta, "command")}`");
        md.AppendLine(Inv, $"- Source: {Get(meta, "source")}");
        md.AppendLine(Inv, $"- Servers: {Get(meta, "versions")}");
        md.AppendLine(Inv, $"- Whole run: {Get(meta, "elapsed_s")} s");
        md.AppendLine();
        string rounds = Setting(meta, "loadgen", "rounds");
        md.AppendLine(Inv, $"Main generator: `bench/loadgen` (C, one thread, epoll), the same for every server. {rounds} round(s); each starts every server afresh, fills it and drives it unmeasured for 2 s (so that the .NET servers' code is compiled by the JIT's optimising tier before it is measured), then runs every shape on every target in turn, the targets' order rotating from round to round; {Setting(meta, "loadgen", "duration")} s measured after {Setting(meta, "loadgen", "warmup")} s of warm-up. Figures are medians over the rounds.");
        md.AppendLine();
        md.AppendLine(Inv, $"Load: {Setting(meta, "load", "datasize")}-byte values, {Setting(meta, "load", "idsize")}-byte keys. GET-heavy: 90% GET / 10% ADD over {Count(Setting(meta, "load", "keys"))} prefilled keys, so every GET hits and every ADD finds its key stored. ADD-heavy: 10% GET / 90% ADD over {Count(Setting(meta, "load", "addkeys"))} keys, the same {Count(Setting(meta, "load", "keys"))} prefilled, so most ADDs store a new session. ADD is add-if-absent everywhere: distcache ADD, `SET key value PX ms NX`, memcached `add`.");
        md.AppendLine();
        md.AppendLine(Get(meta, "garnet_unix") == "no"
            ? "Garnet made no unix socket: it is compared over TCP only, and is missing from the unix-socket shape."
            : "Garnet listens on a unix socket too (`--unixsocket`), so it is in the unix-socket shape.");
        if (shapes.Length > 0)
        {
            md.AppendLine();
            md.AppendLine("| shape | what | loadgen flags (besides the load's) |");
            md.AppendLine("|---|---|---|");
            foreach (Shape s in shapes)
            {
                md.AppendLine(Inv, $"| {s.Name} | {s.Text} | `{s.Flags}` |");
            }
        }

        md.AppendLine();
        md.AppendLine("Server CPU µs/op: the server process's utime + stime (`/proc/PID/stat`, 10 ms ticks) over the measured window, divided by the operations answered (loadgen `-serverpid`); for dc_client → dc_server the sum of both processes. Generator CPU µs/op: loadgen's own (`getrusage`). Over loopback the kernel does the receiving side's TCP work in the sender's context, so each side's system time holds part of the other's; with a connection per operation or one request in flight the generator's figure is of the same order as the server's, with 16 in flight far below it. On a 2-core machine generator and server share the cores: throughput measures the pair, CPU per operation the server.");
    }

    private static void MainSection(StringBuilder md, Shape[] shapes)
    {
        if (shapes.Length == 0)
        {
            return;
        }

        int rounds = shapes.SelectMany(s => s.Runs.Values).Select(a => a.Rounds.Length).DefaultIfEmpty(0).Max();
        md.AppendLine();
        md.AppendLine("## Main: every server through loadgen");
        md.AppendLine();
        md.AppendLine(rounds > 1
            ? "| shape | target | ops/s | ops/s by round | server CPU µs/op | generator CPU µs/op | p50 µs | p99 µs | GET hits / ADD stored | errors |"
            : "| shape | target | ops/s | server CPU µs/op | generator CPU µs/op | p50 µs | p99 µs | GET hits / ADD stored | errors |");
        md.AppendLine(rounds > 1 ? "|---|---|---:|---|---:|---:|---:|---:|---|---:|" : "|---|---|---:|---:|---:|---:|---:|---|---:|");
        foreach (Shape s in shapes)
        {
            foreach ((string key, string label, _) in Targets)
            {
                if (!s.Runs.TryGetValue(key, out Agg? a))
                {
                    continue;
                }

                // dc_client → dc_server: loadgen measured dc_client, then dc_server.
                string cpu = Us(a.ServerUsPerOp) + (a.Processes.Length == 2 ? $" (dc_client {Us(a.Processes[0])} + dc_server {Us(a.Processes[1])})" : string.Empty);
                string byRound = rounds > 1 ? " " + string.Join(" / ", a.Rounds.Select(r => r.OpsPerSec.ToString("N0", Inv))) + " |" : string.Empty;
                md.AppendLine(Inv, $"| {s.Name} | {label} | {a.OpsPerSec:N0} |{byRound} {cpu} | {Us(a.GeneratorUsPerOp)} | {F(a.P50)} | {F(a.P99)} | {a.Outcome} | {a.Errors:N0} |");
            }
        }

        md.AppendLine();
        md.AppendLine("dc_server ÷ each peer, from the medians above: throughput above 1 and CPU per operation below 1 favour dc_server. The dc_client rows put dc_client and dc_server together against the peer alone.");
        md.AppendLine();
        md.AppendLine("| shape | ours | ops/s ÷ Redis | ops/s ÷ memcached | ops/s ÷ Garnet | CPU/op ÷ Redis | CPU/op ÷ memcached | CPU/op ÷ Garnet |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (RatioRow r in RatioRows(shapes))
        {
            md.AppendLine(Inv, $"| {r.Shape} | {Label(r.Ours)} | {string.Join(" | ", r.Throughput.Select(Ratio))} | {string.Join(" | ", r.Cpu.Select(Ratio))} |");
        }
    }

    /// <summary>One row of ratios: ours (dc_server, or dc_client in front of it) against each peer, in Peers' order;
    /// NaN where the shape has no run of that peer.</summary>
    internal sealed record RatioRow(string Shape, string Ours, double[] Throughput, double[] Cpu);

    internal static RatioRow[] RatioRows(Shape[] shapes)
    {
        var rows = new List<RatioRow>();
        foreach (Shape s in shapes)
        {
            foreach (string ours in new[] { "dc_server", "dc_client" })
            {
                if (s.Runs.TryGetValue(ours, out Agg? o))
                {
                    Agg?[] peers = Peers.Select(p => s.Runs.GetValueOrDefault(p)).ToArray();
                    rows.Add(new RatioRow(s.Name, ours,
                        peers.Select(p => p is null ? double.NaN : o.OpsPerSec / p.OpsPerSec).ToArray(),
                        peers.Select(p => p is null ? double.NaN : o.ServerUsPerOp / p.ServerUsPerOp).ToArray()));
                }
            }
        }

        return [.. rows];
    }

    private static void SizeSection(StringBuilder md, SizeRow[] sizes, string warmup, string duration)
    {
        if (sizes.Length == 0)
        {
            return;
        }

        long small = sizes[0].Counts[0], large = sizes[0].Counts[^1];
        string s = small.ToString("N0", Inv), l = large.ToString("N0", Inv);
        md.AppendLine();
        md.AppendLine(Inv, $"## GET only at {s} and at {l} stored sessions (loadgen, 50 × 16, TCP)");
        md.AppendLine();
        md.AppendLine(Inv, $"Each run on a freshly started server, filled first, {warmup} s of warm-up, {duration} s measured; sizes and servers alternate round after round; medians over the rounds, and each round's own ratio (its two sizes ran minutes apart at most).");
        md.AppendLine();
        md.AppendLine(Inv, $"| server | ops/s at {s} | ops/s at {l} | {l} ÷ {s} | by round | server CPU µs/op at {s} / {l} | generator CPU µs/op at {s} / {l} | p99 µs at {s} / {l} | errors |");
        md.AppendLine("|---|---:|---:|---:|---|---:|---:|---:|---:|");
        foreach (SizeRow r in sizes)
        {
            Agg a = r.At[0], b = r.At[^1];
            string byRound = string.Join(", ", b.Rounds.Zip(a.Rounds, (x, y) => (x.OpsPerSec / y.OpsPerSec).ToString("F2", Inv)));
            md.AppendLine(Inv, $"| {Label(r.Target)} | {a.OpsPerSec:N0} | {b.OpsPerSec:N0} | {b.OpsPerSec / a.OpsPerSec:F2} | {byRound} | {Us(a.ServerUsPerOp)} / {Us(b.ServerUsPerOp)} | {Us(a.GeneratorUsPerOp)} / {Us(b.GeneratorUsPerOp)} | {F(a.P99)} / {F(b.P99)} | {a.Errors + b.Errors:N0} |");
        }

        if (sizes.FirstOrDefault(r => r.Target == "dc_server") is SizeRow ours)
        {
            md.AppendLine();
            foreach (int i in new[] { sizes[0].Counts.Length - 1, 0 }.Distinct())
            {
                IEnumerable<string> parts = sizes.Where(r => r.Target != "dc_server").Select(r =>
                    $"{Label(r.Target)} {(ours.At[i].OpsPerSec / r.At[i].OpsPerSec).ToString("F2", Inv)} in throughput, {(ours.At[i].ServerUsPerOp / r.At[i].ServerUsPerOp).ToString("F2", Inv)} in CPU per GET");
                md.AppendLine(Inv, $"dc_server ÷ peer at {sizes[0].Counts[i]:N0} sessions: {string.Join("; ", parts)}.");
                md.AppendLine();
            }
        }
    }

    private static void MemorySection(StringBuilder md, Dictionary<string, MemoryRow> memory)
    {
        if (memory.Count == 0)
        {
            return;
        }

        md.AppendLine();
        md.AppendLine("## Memory per stored session");
        md.AppendLine();
        md.AppendLine("Each server started empty, its `VmRSS` read after 1 s, then filled by loadgen with distinct keys (the same keys and values for all) and read again 1 s later: (full − empty) ÷ sessions.");
        md.AppendLine();
        md.AppendLine("| server | sessions stored | RSS empty | RSS full | resident bytes per session | dc_server ÷ this |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        double? ours = memory.TryGetValue("ours", out MemoryRow? o) ? o.PerSession : null;
        foreach ((string kind, string target) in Kinds)
        {
            if (memory.TryGetValue(kind, out MemoryRow? m))
            {
                md.AppendLine(Inv, $"| {Label(target)} | {m.Count:N0} | {m.EmptyKiB / 1024.0:F1} MiB | {m.FullKiB / 1024.0:F1} MiB | {m.PerSession:F0} | {(ours is double x ? (x / m.PerSession).ToString("F2", Inv) : "n/a")} |");
            }
        }
    }

    internal static string F(double? v) => v is { } x && !double.IsNaN(x) ? x.ToString(x >= 100 ? "F0" : "F1", Inv) : "n/a";

    internal static string Us(double v) => double.IsNaN(v) ? "n/a" : v.ToString(v >= 10 ? "F1" : "F2", Inv);

    internal static string Ratio(double v) => double.IsNaN(v) || double.IsInfinity(v) ? "n/a" : v.ToString("F2", Inv);

    internal static double Median(IEnumerable<double> values)
    {
        double[] v = values.Where(x => !double.IsNaN(x)).Order().ToArray();
        return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>One loadgen run (its -json file).</summary>
    internal sealed record LgRun(double OpsPerSec, double[] Processes, double GeneratorUsPerOp, double P50, double P99, long Errors, double GetHits, double AddStored)
    {
        public static LgRun FromJson(string path)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = doc.RootElement;
            JsonElement lat = root.GetProperty("latency_us");
            JsonElement cpu = root.GetProperty("cpu");
            double[] processes = cpu.GetProperty("servers").EnumerateArray()
                .Select(p => p.TryGetProperty("us_per_op", out JsonElement v) ? v.GetDouble() : double.NaN).ToArray();
            JsonElement ops = root.GetProperty("operations");
            static double Share(JsonElement ops, string op, string outcome) =>
                ops.TryGetProperty(op, out JsonElement o) && o.GetProperty("ops").GetInt64() > 0
                    ? 100.0 * o.GetProperty(outcome).GetInt64() / o.GetProperty("ops").GetInt64()
                    : double.NaN;
            return new LgRun(
                root.GetProperty("ops_per_s").GetDouble(),
                processes,
                cpu.GetProperty("loadgen").GetProperty("us_per_op").GetDouble(),
                lat.GetProperty("p50").GetDouble(),
                lat.GetProperty("p99").GetDouble(),
                root.GetProperty("errors").GetProperty("total").GetInt64(),
                Share(ops, "get", "hits"),
                Share(ops, "add", "stored"));
        }
    }

    /// <summary>One target's rounds of one shape; every figure the median over the rounds.</summary>
    internal sealed class Agg(LgRun[] rounds)
    {
        public LgRun[] Rounds { get; } = rounds;

        public double OpsPerSec => Median(Rounds.Select(r => r.OpsPerSec));

        /// <summary>CPU µs per operation of each -serverpid process.</summary>
        public double[] Processes => Enumerable.Range(0, Rounds[0].Processes.Length).Select(i => Median(Rounds.Select(r => r.Processes[i]))).ToArray();

        /// <summary>The processes together (dc_client and dc_server for the dc_client target), per round, then the median.</summary>
        public double ServerUsPerOp => Median(Rounds.Select(r => r.Processes.Sum()));

        public double GeneratorUsPerOp => Median(Rounds.Select(r => r.GeneratorUsPerOp));

        public double P50 => Median(Rounds.Select(r => r.P50));

        public double P99 => Median(Rounds.Select(r => r.P99));

        public long Errors => Rounds.Sum(r => r.Errors);

        public string Outcome
        {
            get
            {
                static string P(double v) => double.IsNaN(v) ? "-" : v.ToString("F0", Inv) + "%";
                return $"{P(Median(Rounds.Select(r => r.GetHits)))} / {P(Median(Rounds.Select(r => r.AddStored)))}";
            }
        }

        /// <summary>PREFIX.r1.json, PREFIX.r2.json, ... while they exist; null if there is none.</summary>
        public static Agg? Read(string prefix)
        {
            var runs = new List<LgRun>();
            for (int r = 1; File.Exists($"{prefix}.r{r}.json"); r++)
            {
                runs.Add(LgRun.FromJson($"{prefix}.r{r}.json"));
            }

            return runs.Count > 0 ? new Agg([.. runs]) : null;
        }
    }

    /// <summary>A loadgen shape (lg/shapes.txt: NAME|TEXT|FLAGS) and its targets' rounds (lg/NAME.TARGET.rR.json).</summary>
    internal sealed record Shape(string Name, string Text, string Flags, Dictionary<string, Agg> Runs)
    {
        public static Shape[] ReadAll(string dir)
        {
            string list = Path.Combine(dir, "lg", "shapes.txt");
            if (!File.Exists(list))
            {
                return [];
            }

            return File.ReadAllLines(list).Select(l => l.Split('|')).Where(f => f.Length == 3).Select(f =>
            {
                var runs = new Dictionary<string, Agg>();
                foreach ((string key, _, _) in Targets)
                {
                    if (Agg.Read(Path.Combine(dir, "lg", $"{f[0]}.{key}")) is Agg a)
                    {
                        runs[key] = a;
                    }
                }

                return new Shape(f[0], f[1], f[2], runs);
            }).Where(s => s.Runs.Count > 0).ToArray();
        }
    }

    /// <summary>One server's GET-only runs at each store size (size/KIND-COUNT.rR.json), counts ascending.</summary>
    internal sealed record SizeRow(string Target, long[] Counts, Agg[] At)
    {
        public static SizeRow[] ReadAll(string dir)
        {
            string sizeDir = Path.Combine(dir, "size");
            if (!Directory.Exists(sizeDir))
            {
                return [];
            }

            long[] counts = Directory.GetFiles(sizeDir, "ours-*.r1.json")
                .Select(f => Path.GetFileName(f)["ours-".Length..^".r1.json".Length])
                .Select(c => long.Parse(c, Inv)).Order().ToArray();
            if (counts.Length == 0)
            {
                return [];
            }

            var rows = new List<SizeRow>();
            foreach ((string kind, string target) in Kinds)
            {
                Agg?[] at = counts.Select(c => Agg.Read(Path.Combine(sizeDir, $"{kind}-{c}"))).ToArray();
                if (at.All(a => a is not null))
                {
                    rows.Add(new SizeRow(target, counts, at.Select(a => a!).ToArray()));
                }
            }

            return [.. rows];
        }
    }

    /// <summary>memory.txt: one server's resident set before and after storing Count sessions.</summary>
    internal sealed record MemoryRow(long Count, long EmptyKiB, long FullKiB)
    {
        public double PerSession => (FullKiB - EmptyKiB) * 1024.0 / Count;

        public static Dictionary<string, MemoryRow> ReadAll(string dir)
        {
            string path = Path.Combine(dir, "memory.txt");
            return !File.Exists(path)
                ? []
                : File.ReadAllLines(path).Skip(1)
                    .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    .Where(f => f.Length == 4)
                    .ToDictionary(f => f[0], f => new MemoryRow(long.Parse(f[1], Inv), long.Parse(f[2], Inv), long.Parse(f[3], Inv)));
        }
    }
}
