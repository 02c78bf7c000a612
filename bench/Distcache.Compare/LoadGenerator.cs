using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Distcache.Tools;

namespace Distcache.Compare;

/// <summary>dc_test -bench's shape for dc_server (distcache protocol: GET, ADD), memcached (text protocol:
/// <c>get</c>, <c>add</c>) and Redis (RESP: <c>GET</c>, <c>SET NX EX</c>), so one generator, with one CPU cost per
/// operation, can drive all three: -clients connections, each keeping -pipeline requests in flight (closed loop) or
/// sending -rate requests a second in all (paced, at most -pipeline in flight),
/// operations drawn by the -mix weights over a uniform key space, a prefill, a warm-up, then a measured window.
/// ADD is add-if-absent on all three servers, with a one-hour lifetime as dc_test uses.</summary>
internal static class LoadGenerator
{
    public static async Task<int> RunAsync(LoadOptions o)
    {
        var shared = new Shared(o);
        var conns = new Connection[o.Clients];
        for (int i = 0; i < conns.Length; i++)
        {
            // Independent seeds: SplitMix64 steps its state by a constant, so seeds that differ by a multiple of that
            // constant would give every connection the same keys, shifted.
            conns[i] = new Connection(o, shared, (ulong)new Random(1000 + i).NextInt64());
            await conns[i].ConnectAsync();
        }

        // Prefill: connection i adds keys i, i + clients, ... with 16 requests in flight.
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(conns.Select((c, i) => Task.Run(() => c.PrefillAsync(i, o.Clients))));
        Console.Error.WriteLine($"prefill: {o.Prefill} keys in {clock.Elapsed.TotalSeconds:F1} s");
        if (conns.Any(c => c.Stats.Errors > 0))
        {
            Console.Error.WriteLine($"Error, the prefill failed: {conns.First(c => c.Stats.Errors > 0).FirstError}");
            return 1;
        }

        if (o.PrefillOnly)
        {
            foreach (Connection c in conns)
            {
                c.Dispose();
            }

            return 0;
        }

        long start = Stopwatch.GetTimestamp() + (long)(o.Warmup * Stopwatch.Frequency);
        long stop = start + (long)(o.Duration * Stopwatch.Frequency);
        shared.MeasureFrom = start;
        shared.StopAt = stop;
        Task running = Task.WhenAll(conns.Select(c => Task.Run(c.RunAsync)));
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        while (Stopwatch.GetTimestamp() < start)
        {
            Thread.SpinWait(100);
        }

        double server0 = o.ServerPid > 0 ? ProcStat.CpuSeconds(o.ServerPid) : 0;
        TimeSpan self0 = Process.GetCurrentProcess().TotalProcessorTime;
        await Task.Delay(TimeSpan.FromSeconds(o.Duration));
        while (Stopwatch.GetTimestamp() < stop)
        {
            Thread.SpinWait(100);
        }

        double server1 = o.ServerPid > 0 ? ProcStat.CpuSeconds(o.ServerPid) : 0;
        TimeSpan self1 = Process.GetCurrentProcess().TotalProcessorTime;
        await running;

        var total = new Stats();
        foreach (Connection c in conns)
        {
            total.Add(c.Stats);
            c.Dispose();
        }

        WriteResult(o, total, server1 - server0, (self1 - self0).TotalSeconds, conns.Select(c => c.FirstError).FirstOrDefault(e => e is not null));
        return total.Errors > 0 ? 1 : 0;
    }

    private static void WriteResult(LoadOptions o, Stats s, double serverCpu, double selfCpu, string? firstError)
    {
        long ops = s.Gets + s.Adds;
        double opsPerSec = ops / o.Duration;
        LatencyHistogram h = s.Latency;
        double Us(double p) => h.ValueAtPercentile(p) / 1000.0;
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{o.Protocol} {o.Host}:{o.Port}: {o.Clients} clients x pipeline {o.Pipeline}{(o.Rate > 0 ? $", paced at {o.Rate} requests/s" : "")}, mix get={o.GetWeight},add={o.AddWeight}, {o.Keys} keys ({o.Prefill} prefilled), ids {o.IdSize} B, data {o.DataSize} B\n");
        text.Append(CultureInfo.InvariantCulture, $"  operations {ops}  {opsPerSec:F0} ops/s  GET {s.Gets} (hits {s.GetHits})  ADD {s.Adds} (stored {s.AddStored})  errors {s.Errors}\n");
        text.Append(CultureInfo.InvariantCulture, $"  latency (us) p50 {Us(50):F1}  p99 {Us(99):F1}  p99.9 {Us(99.9):F1}  max {h.Max / 1000.0:F1}\n");
        text.Append(CultureInfo.InvariantCulture, $"  cpu server {serverCpu:F2} s = {(ops > 0 ? serverCpu * 1e6 / ops : 0):F2} us/op; generator {selfCpu:F2} s ({selfCpu / o.Duration * 100:F0}% of one core)\n");
        if (firstError is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $"  first error: {firstError}\n");
        }

        Console.Error.Write(text.ToString());
        if (o.Json is null)
        {
            return;
        }

        using FileStream file = File.Create(o.Json);
        using var w = new Utf8JsonWriter(file, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("generator", "Distcache.Compare load");
        w.WriteString("protocol", o.Protocol.ToString().ToLowerInvariant());
        w.WriteNumber("clients", o.Clients);
        w.WriteNumber("pipeline", o.Pipeline);
        if (o.Rate > 0)
        {
            w.WriteNumber("rate", o.Rate);
        }

        w.WriteNumber("keys", o.Keys);
        w.WriteNumber("prefill", o.Prefill);
        w.WriteNumber("duration_s", o.Duration);
        w.WriteNumber("operations", ops);
        w.WriteNumber("ops_per_sec", Math.Round(opsPerSec, 1));
        w.WriteNumber("errors", s.Errors);
        w.WriteStartObject("by_operation");
        w.WriteStartObject("get");
        w.WriteNumber("count", s.Gets);
        w.WriteNumber("hits", s.GetHits);
        w.WriteNumber("misses", s.Gets - s.GetHits);
        w.WriteEndObject();
        w.WriteStartObject("add");
        w.WriteNumber("count", s.Adds);
        w.WriteNumber("hits", s.AddStored);
        w.WriteNumber("misses", s.Adds - s.AddStored);
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartObject("latency_us");
        w.WriteNumber("p50", Us(50));
        w.WriteNumber("p90", Us(90));
        w.WriteNumber("p99", Us(99));
        w.WriteNumber("p99_9", Us(99.9));
        w.WriteNumber("max", h.Max / 1000.0);
        w.WriteEndObject();
        w.WriteStartObject("cpu");
        w.WriteNumber("client_s", Math.Round(selfCpu, 3));
        w.WriteNumber("server_s", Math.Round(serverCpu, 3));
        w.WriteNumber("server_us_per_op", ops > 0 ? Math.Round(serverCpu * 1e6 / ops, 3) : 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    internal sealed class Shared
    {
        public Shared(LoadOptions o)
        {
            Options = o;
            Data = new byte[o.DataSize];
            new Random(42).NextBytes(Data);
            for (int i = 0; i < Data.Length; i++)
            {
                Data[i] = (byte)('a' + (Data[i] % 26)); // printable; the text protocols do not need it, it keeps dumps readable
            }

            Prefix = Encoding.ASCII.GetBytes(KeyNames.Prefix(o.IdSize));
        }

        public LoadOptions Options { get; }
        public byte[] Data { get; }
        public byte[] Prefix { get; }
        public long MeasureFrom { get; set; } = long.MaxValue;
        public long StopAt { get; set; } = long.MaxValue;
    }

    internal sealed class Stats
    {
        public LatencyHistogram Latency { get; } = new();
        public long Gets { get; set; }
        public long GetHits { get; set; }
        public long Adds { get; set; }
        public long AddStored { get; set; }
        public long Errors { get; set; }

        public void Add(Stats other)
        {
            Latency.Add(other.Latency);
            Gets += other.Gets;
            GetHits += other.GetHits;
            Adds += other.Adds;
            AddStored += other.AddStored;
            Errors += other.Errors;
        }
    }
}
