using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Distcache.Compare;

/// <summary>The second opinions: the same servers driven by the other generators (Distcache.Compare load, dc_test
/// -bench, redis-benchmark), one run each, and the paced runs, which loadgen cannot make.</summary>
internal static partial class Report
{
    private static readonly string[] Scenarios = ["get90-p1", "add90-p1", "get90-p16", "add90-p16"];

    // All three servers through Distcache.Compare, then each side's own tool.
    private static readonly (string Key, string Label)[] SecondServers =
    [
        ("ours-gen", "dc_server (Distcache.Compare)"),
        ("redis", "Redis (Distcache.Compare)"),
        ("memcached", "memcached (Distcache.Compare)"),
        ("ours", "dc_server (dc_test -bench)"),
        ("rb", "Redis (redis-benchmark, composed)"),
    ];

    private static void SecondOpinions(StringBuilder md, string dir)
    {
        bool scenarios = Scenarios.All(s => File.Exists(Path.Combine(dir, $"{s}.ours-gen.json")));
        bool scale = Directory.GetFiles(dir, "scale-*.json").Length > 0;
        if (!scenarios && !scale)
        {
            return;
        }

        md.AppendLine();
        md.AppendLine("## Second opinions: the other generators, one run each");
        md.AppendLine();
        md.AppendLine("The same servers driven by `Distcache.Compare load` (C#, the generator of the comparisons before loadgen; dc_server, Redis and memcached), by dc_server's own `dc_test -bench` and by Redis's `redis-benchmark`, each run once on a freshly started server, 50 connections. They show how much the generator changes the figures; the main figures are loadgen's, above. Server CPU here is sampled by each generator from `/proc/PID/stat` in the same way; \"generator cores\" is the generator's CPU seconds per second.");
        if (scenarios)
        {
            ScenarioTables(md, dir);
        }

        if (scale)
        {
            ScaleTables(md, dir);
        }
    }

    private static void ScenarioTables(StringBuilder md, string dir)
    {
        var rows = new Dictionary<(string Scenario, string Server), Row>();
        foreach (string scenario in Scenarios)
        {
            foreach (string key in new[] { "ours", "ours-gen", "redis", "memcached" })
            {
                rows[(scenario, key)] = Row.FromJson(Path.Combine(dir, $"{scenario}.{key}.json"));
            }

            double getWeight = scenario.StartsWith("get90", StringComparison.Ordinal) ? 0.9 : 0.1;
            rows[(scenario, "rb")] = Row.Compose(RedisBenchmark.Parse(Path.Combine(dir, $"{scenario}.rb-get")), RedisBenchmark.Parse(Path.Combine(dir, $"{scenario}.rb-set")), getWeight);
        }

        md.AppendLine();
        md.AppendLine("| scenario | server (generator) | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | server cores | generator cores | GET hits / ADD stored |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (string scenario in Scenarios)
        {
            foreach ((string key, string label) in SecondServers)
            {
                Row r = rows[(scenario, key)];
                md.AppendLine(Inv, $"| {Describe(scenario)} | {label} | {r.OpsPerSec:N0} | {F(r.P50)} | {F(r.P99)} | {F(r.P999)} | {r.ServerUsPerOp:F2} | {r.ServerCores:F2} | {r.GeneratorCores:F2} | {r.Outcome} |");
            }
        }

        md.AppendLine();
        md.AppendLine("Ratios, second opinions: dc_server ÷ Redis and ÷ memcached with all three through Distcache.Compare; dc_server through dc_test ÷ Redis through redis-benchmark (each side's own tool); and what the generator alone changes for dc_server (dc_test ÷ Distcache.Compare).");
        md.AppendLine();
        md.AppendLine("| scenario | ops/s ÷ Redis (Distcache.Compare) | ops/s ÷ memcached (Distcache.Compare) | CPU/op ÷ Redis (Distcache.Compare) | CPU/op ÷ memcached (Distcache.Compare) | ops/s dc_test ÷ redis-benchmark | CPU/op dc_test ÷ redis-benchmark | ops/s of dc_server: dc_test ÷ Distcache.Compare |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (string scenario in Scenarios)
        {
            Row o = rows[(scenario, "ours-gen")], r = rows[(scenario, "redis")], m = rows[(scenario, "memcached")];
            Row t = rows[(scenario, "ours")], b = rows[(scenario, "rb")];
            md.AppendLine(Inv, $"| {Describe(scenario)} | {o.OpsPerSec / r.OpsPerSec:F2} | {o.OpsPerSec / m.OpsPerSec:F2} | {o.ServerUsPerOp / r.ServerUsPerOp:F2} | {o.ServerUsPerOp / m.ServerUsPerOp:F2} | {t.OpsPerSec / b.OpsPerSec:F2} | {t.ServerUsPerOp / b.ServerUsPerOp:F2} | {t.OpsPerSec / o.OpsPerSec:F2} |");
        }
    }

    private static void ScaleTables(StringBuilder md, string dir)
    {
        long[] counts = Directory.GetFiles(dir, "scale-*.json").Select(f => long.Parse(Path.GetFileNameWithoutExtension(f)["scale-".Length..], Inv)).Order().ToArray();
        Row? Load(string file) => File.Exists(Path.Combine(dir, file)) ? Row.FromJson(Path.Combine(dir, file)) : null;
        md.AppendLine();
        md.AppendLine("| GET only, 50 × 16, second opinions | stored sessions | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | generator cores | GET hits |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach ((string prefix, string label) in new[] { ("ours-gen-", SecondServers[0].Label), ("redis-", SecondServers[1].Label), (string.Empty, SecondServers[3].Label) })
        {
            foreach (long count in counts)
            {
                if (Load($"{prefix}scale-{count}.json") is Row r)
                {
                    md.AppendLine(Inv, $"| {label} | {count:N0} | {r.OpsPerSec:N0} | {F(r.P50)} | {F(r.P99)} | {F(r.P999)} | {r.ServerUsPerOp:F2} | {r.GeneratorCores:F2} | {r.Outcome} |");
                }
            }
        }

        if (counts.Length == 2)
        {
            string at = $"at {counts[1]:N0} ÷ at {counts[0]:N0} sessions";
            md.AppendLine();
            foreach ((string prefix, string label) in new[] { ("ours-gen-", SecondServers[0].Label), ("redis-", SecondServers[1].Label), (string.Empty, SecondServers[3].Label) })
            {
                if (Load($"{prefix}scale-{counts[0]}.json") is Row small && Load($"{prefix}scale-{counts[1]}.json") is Row large)
                {
                    md.AppendLine(Inv, $"- {label}, GET throughput {at}: {large.OpsPerSec / small.OpsPerSec:F2}; server CPU per GET: {large.ServerUsPerOp / small.ServerUsPerOp:F2}; the generator took {small.GeneratorCores:F2} and {large.GeneratorCores:F2} cores.");
                }
            }
        }

        // Latency under a paced (open-loop) GET load, largest store: at half of each server's maximum, ours at Redis's
        // rate, and both at a low rate, which shows what the machine adds whatever the server.
        var paced = new (string File, string Label)[]
        {
            ("half-load", "dc_server (dc_test -rate), half of dc_test's maximum"),
            ("paced-half.ours", "dc_server (Distcache.Compare -rate), half of its maximum"),
            ("paced-half.redis", "Redis (Distcache.Compare -rate), half of its maximum"),
            ("paced-redis-half.ours", "dc_server (Distcache.Compare -rate), at Redis's half-load rate"),
            ("paced-low.ours", "dc_server (Distcache.Compare -rate), low rate"),
            ("paced-low.redis", "Redis (Distcache.Compare -rate), low rate"),
        };
        if (counts.Length > 0 && paced.Any(p => File.Exists(Path.Combine(dir, p.File + ".json"))))
        {
            md.AppendLine();
            md.AppendLine(Inv, $"Latency under a paced GET load (an open loop, so queueing at saturation does not hide pauses), {counts[^1]:N0} stored sessions, 50 connections with at most 16 in flight each; loadgen has no pacing, so these runs are Distcache.Compare's and dc_test's, at half of the maximum each measured above, and at a low rate that neither server feels.");
            md.AppendLine();
            md.AppendLine("| GET only, paced | offered ops/s | answered ops/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU µs/op | server cores | generator cores |");
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
    }

    /// <summary>The "rate" a paced run was asked for (dc_test -rate and Distcache.Compare's -rate both record it).</summary>
    private static double OfferedRate(string jsonPath)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
        return doc.RootElement.TryGetProperty("rate", out JsonElement rate) ? rate.GetDouble() : double.NaN;
    }

    private static string Describe(string scenario) =>
        (scenario.StartsWith("get90", StringComparison.Ordinal) ? "GET-heavy 90/10" : "ADD-heavy 10/90") + ", 50 × " + scenario[(scenario.LastIndexOf('p') + 1)..];

    /// <summary>One run of Distcache.Compare load or dc_test -bench (their JSON), or redis-benchmark's two tests composed.</summary>
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
