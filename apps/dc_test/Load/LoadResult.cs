using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Distcache.Protocol;

namespace Distcache.Apps.Test.Load;

/// <summary>The outcome of a load run, as a text report and as JSON.</summary>
internal sealed class LoadResult
{
    private static readonly double[] Percentiles = [50, 90, 99, 99.9];

    private readonly LoadSettings _settings;
    private readonly LoadStatistics _total;
    private readonly TimeSpan _elapsed;
    private readonly bool _interrupted;

    public LoadResult(LoadSettings settings, LoadStatistics total, TimeSpan elapsed, bool interrupted)
    {
        _settings = settings;
        _total = total;
        _elapsed = elapsed;
        _interrupted = interrupted;
    }

    /// <summary>Our own CPU time over the measurement window.</summary>
    public CpuSample OurCpu { get; init; }

    /// <summary>The server's CPU time over the same window, with <c>-serverpid</c>.</summary>
    public CpuSample? ServerCpu { get; init; }

    /// <summary>Bytes we allocated during the window: the hot path should allocate nothing per request.</summary>
    public long Allocated { get; init; }

    /// <summary>Generation-0 collections during the window.</summary>
    public int Collections { get; init; }

    private double OpsPerSecond => _elapsed > TimeSpan.Zero ? _total.Measured / _elapsed.TotalSeconds : 0;

    public void WriteText(TextWriter output)
    {
        LoadSettings s = _settings;
        var text = new System.Text.StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"dc_test -bench: {s.Target}, {s.Clients} clients x pipeline {s.Pipeline}{(s.ShortConnections ? ", a new connection per request" : "")}{(s.Rate is int rate ? $", paced at {rate} requests/s" : "")}, mix {s.Mix}, {s.Keys} keys ({s.Prefill} prefilled), ids of {s.IdSize} bytes, data {s.DataMin}..{s.DataMax} bytes");
        text.AppendLine(c, $"  measured     {_elapsed.TotalSeconds:F2} s after {s.Warmup.TotalSeconds:F1} s of warm-up{(_interrupted ? " (interrupted)" : string.Empty)}");
        text.AppendLine(c, $"  operations   {_total.Measured,10}   {OpsPerSecond,12:F0} ops/s");
        foreach (Operation operation in OperationMix.DisplayOrder)
        {
            int i = (int)operation;
            if (_total.Count[i] == 0 && _total.Errors[i] == 0)
            {
                continue;
            }

            (string hit, string miss) = Words(operation);
            text.AppendLine(c, $"  {operation.ToWireName(),-12} {_total.Count[i],10}   {hit} {_total.Hits[i]}   {miss} {_total.Misses[i]}{(_total.Errors[i] > 0 ? $"   errors {_total.Errors[i]}" : string.Empty)}");
        }

        text.AppendLine(c, $"  errors       {_total.ErrorTotal,10}{(_total.ConnectionErrors > 0 ? $"   ({_total.ConnectionErrors} connections failed)" : string.Empty)}");
        text.Append(c, $"  latency (us) min {Micro(_total.Latency.Min)}");
        foreach (double p in Percentiles)
        {
            text.Append(c, $"   p{p} {Micro(_total.Latency.ValueAtPercentile(p))}");
        }

        text.AppendLine(c, $"   max {Micro(_total.Latency.Max)}   mean {_total.Latency.Mean / 1000:F1}");
        AppendCpu(text, "dc_test", OurCpu);
        if (ServerCpu is { } server)
        {
            AppendCpu(text, "server", server);
        }

        text.AppendLine(c, $"  memory       {Allocated / 1024.0:F0} KB allocated while measuring ({(_total.Measured == 0 ? 0 : (double)Allocated / _total.Measured):F2} bytes/op), {Collections} gen0 GCs");
        output.Write(text.ToString());
        output.Flush();
    }

    public async Task WriteJsonAsync(string path)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            Write(w);
        }

        buffer.Write("\n"u8);
        if (path == "-")
        {
            using Stream stdout = Console.OpenStandardOutput();
            await stdout.WriteAsync(buffer.WrittenMemory).ConfigureAwait(false);
            await stdout.FlushAsync().ConfigureAwait(false);
        }
        else
        {
            await File.WriteAllBytesAsync(path, buffer.WrittenMemory.ToArray()).ConfigureAwait(false);
        }
    }

    private void Write(Utf8JsonWriter w)
    {
        LoadSettings s = _settings;
        w.WriteStartObject();
        w.WriteString("target", s.Target.ToString());
        w.WriteNumber("clients", s.Clients);
        w.WriteNumber("pipeline", s.Pipeline);
        w.WriteBoolean("short_connections", s.ShortConnections);
        if (s.Rate is int offered)
        {
            w.WriteNumber("rate", offered);
        }
        w.WriteStartObject("mix");
        foreach (Operation operation in OperationMix.DisplayOrder)
        {
            w.WriteNumber(Name(operation), s.Mix.WeightOf(operation));
        }

        w.WriteEndObject();
        w.WriteNumber("keys", s.Keys);
        w.WriteNumber("prefill", s.Prefill);
        w.WriteNumber("id_size", s.IdSize);
        w.WriteNumber("data_min", s.DataMin);
        w.WriteNumber("data_max", s.DataMax);
        w.WriteNumber("warmup_s", s.Warmup.TotalSeconds);
        w.WriteNumber("duration_s", Math.Round(_elapsed.TotalSeconds, 6));
        if (s.Requests is { } requests)
        {
            w.WriteNumber("requests", requests);
        }
        else
        {
            w.WriteNull("requests");
        }

        w.WriteBoolean("interrupted", _interrupted);
        w.WriteNumber("operations", _total.Measured);
        w.WriteNumber("ops_per_sec", Math.Round(OpsPerSecond, 1));
        w.WriteNumber("errors", _total.ErrorTotal);
        w.WriteNumber("connection_errors", _total.ConnectionErrors);
        w.WriteStartObject("by_operation");
        foreach (Operation operation in OperationMix.DisplayOrder)
        {
            int i = (int)operation;
            w.WriteStartObject(Name(operation));
            w.WriteNumber("count", _total.Count[i]);
            w.WriteNumber("hits", _total.Hits[i]);
            w.WriteNumber("misses", _total.Misses[i]);
            w.WriteNumber("errors", _total.Errors[i]);
            w.WriteEndObject();
        }

        w.WriteEndObject();
        w.WriteStartObject("latency_us");
        w.WriteNumber("min", Micro(_total.Latency.Min));
        w.WriteNumber("mean", Math.Round(_total.Latency.Mean / 1000, 3));
        w.WriteNumber("p50", Micro(_total.Latency.ValueAtPercentile(50)));
        w.WriteNumber("p90", Micro(_total.Latency.ValueAtPercentile(90)));
        w.WriteNumber("p99", Micro(_total.Latency.ValueAtPercentile(99)));
        w.WriteNumber("p99_9", Micro(_total.Latency.ValueAtPercentile(99.9)));
        w.WriteNumber("max", Micro(_total.Latency.Max));
        w.WriteEndObject();
        w.WriteStartObject("cpu");
        WriteCpu(w, "client", OurCpu);
        if (ServerCpu is { } server)
        {
            WriteCpu(w, "server", server);
        }

        w.WriteEndObject();
        w.WriteNumber("allocated_bytes", Allocated);
        w.WriteNumber("gen0_collections", Collections);
        w.WriteEndObject();
    }

    private void AppendCpu(System.Text.StringBuilder text, string who, CpuSample cpu) => text.AppendLine(CultureInfo.InvariantCulture,
        $"  cpu {who,-8} {cpu.Total.TotalSeconds,6:F2} s (user {cpu.User.TotalSeconds:F2}, system {cpu.System.TotalSeconds:F2}) = {PerOp(cpu.Total):F2} us/op, user {PerOp(cpu.User):F2} us/op; {Share(cpu.Total):F0}% of one core");

    private void WriteCpu(Utf8JsonWriter w, string who, CpuSample cpu)
    {
        w.WriteNumber(who + "_s", Math.Round(cpu.Total.TotalSeconds, 3));
        w.WriteNumber(who + "_user_s", Math.Round(cpu.User.TotalSeconds, 3));
        w.WriteNumber(who + "_system_s", Math.Round(cpu.System.TotalSeconds, 3));
        w.WriteNumber(who + "_us_per_op", Math.Round(PerOp(cpu.Total), 3));
    }

    private static string Name(Operation operation) => operation.ToWireName().ToLowerInvariant();

    private static (string Hit, string Miss) Words(Operation operation) => operation switch
    {
        Operation.Add => ("stored", "exists"),
        Operation.Remove => ("removed", "absent"),
        _ => ("hits", "misses"),
    };

    private static double Micro(long nanoseconds) => Math.Round(nanoseconds / 1000.0, 1);

    private double PerOp(TimeSpan cpu) => _total.Measured == 0 ? 0 : cpu.TotalMicroseconds / _total.Measured;

    private double Share(TimeSpan cpu) => _elapsed > TimeSpan.Zero ? 100 * cpu / _elapsed : 0;
}
