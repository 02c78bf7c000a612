using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Distcache.Hosting;

/// <summary>One value an observable instrument reported, with its attributes.</summary>
/// <param name="Instrument">The instrument.</param>
/// <param name="Value">The value.</param>
/// <param name="IsInteger">Whether it was reported as an integer (printed without a decimal point).</param>
/// <param name="Tags">Its attributes.</param>
public readonly record struct MetricSample(Instrument Instrument, double Value, bool IsInteger, KeyValuePair<string, object?>[] Tags);

/// <summary>
/// Reads the observable instruments of the named meters on demand (a scrape), through a <see cref="MeterListener"/>.
/// Only observable instruments are read: they report current totals when asked, so nothing is aggregated between
/// scrapes. The meters of dc_server and dc_client have only those (a counter updated per request would cost the
/// request path what the observable ones do not).
/// </summary>
public sealed class MetricsCollector : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _gate = new();
    private readonly HashSet<string> _meters;
    private readonly List<MetricSample> _samples = [];

    /// <summary>Starts listening to the meters with these names, those created before and after alike.</summary>
    /// <param name="meterNames">Meter names, e.g. <c>Distcache.Server</c>.</param>
    public MetricsCollector(params string[] meterNames)
    {
        _meters = [.. meterNames];
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (_meters.Contains(instrument.Meter.Name) && instrument.IsObservable)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, true, tags.ToArray())));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, true, tags.ToArray())));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, false, tags.ToArray())));
        _listener.SetMeasurementEventCallback<float>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, false, tags.ToArray())));
        _listener.Start();
    }

    /// <summary>Asks every instrument for its values now.</summary>
    /// <returns>The values, instrument by instrument in the order they were created.</returns>
    public IReadOnlyList<MetricSample> Collect()
    {
        // The callbacks run on this thread, inside RecordObservableInstruments; the gate keeps two scrapes apart.
        lock (_gate)
        {
            _samples.Clear();
            _listener.RecordObservableInstruments();
            return [.. _samples];
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// The Prometheus text exposition format (version 0.0.4) of instrument values, with OpenTelemetry's rules for
/// turning instrument names and units into metric names: dots become underscores, the unit is appended in words
/// (<c>By</c> as <c>bytes</c>, <c>s</c> as <c>seconds</c>; annotations such as <c>{operation}</c> are dropped), and
/// a monotonic counter ends in <c>_total</c>. So <c>distcache.server.operations</c> in <c>{operation}</c> is
/// <c>distcache_server_operations_total</c> and <c>distcache.server.storage.usage</c> in <c>By</c> is
/// <c>distcache_server_storage_usage_bytes</c>.
/// </summary>
public static class PrometheusExposition
{
    /// <summary>The content type of the exposition.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>The metric name of an instrument.</summary>
    /// <param name="instrument">The instrument.</param>
    /// <returns>The name, e.g. <c>distcache_server_operations_total</c>.</returns>
    public static string MetricName(Instrument instrument)
    {
        ArgumentNullException.ThrowIfNull(instrument);
        return MetricName(instrument.Name, instrument.Unit, IsCounter(instrument));
    }

    /// <summary>The metric name of an instrument with this name and unit.</summary>
    /// <param name="name">The instrument's name, e.g. <c>distcache.server.storage.usage</c>.</param>
    /// <param name="unit">Its UCUM unit, e.g. <c>By</c>, or null.</param>
    /// <param name="monotonic">Whether it is a counter (the name then ends in <c>_total</c>).</param>
    /// <returns>The metric name.</returns>
    public static string MetricName(string name, string? unit, bool monotonic)
    {
        ArgumentNullException.ThrowIfNull(name);
        string metric = Sanitize(name);
        string? suffix = UnitSuffix(unit);
        if (suffix is not null && !metric.EndsWith("_" + suffix, StringComparison.Ordinal))
        {
            metric += "_" + suffix;
        }

        return monotonic && !metric.EndsWith("_total", StringComparison.Ordinal) ? metric + "_total" : metric;
    }

    /// <summary>Renders the samples: a <c># HELP</c> and <c># TYPE</c> line per metric, then one line per sample.</summary>
    /// <param name="samples">Values as <see cref="MetricsCollector.Collect"/> gives them.</param>
    /// <returns>The exposition text.</returns>
    public static string Render(IEnumerable<MetricSample> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var text = new StringBuilder();
        Instrument? current = null;
        string name = string.Empty;
        foreach (MetricSample sample in samples)
        {
            if (!ReferenceEquals(sample.Instrument, current))
            {
                current = sample.Instrument;
                name = MetricName(current);
                if (!string.IsNullOrEmpty(current.Description))
                {
                    text.Append("# HELP ").Append(name).Append(' ').Append(EscapeHelp(current.Description)).Append('\n');
                }

                text.Append("# TYPE ").Append(name).Append(IsCounter(current) ? " counter\n" : " gauge\n");
            }

            text.Append(name);
            if (sample.Tags.Length > 0)
            {
                text.Append('{');
                for (int i = 0; i < sample.Tags.Length; i++)
                {
                    if (i > 0)
                    {
                        text.Append(',');
                    }

                    text.Append(Sanitize(sample.Tags[i].Key)).Append("=\"").Append(EscapeLabel(Convert.ToString(sample.Tags[i].Value, CultureInfo.InvariantCulture) ?? string.Empty)).Append('"');
                }

                text.Append('}');
            }

            text.Append(' ').Append(FormatValue(sample.Value, sample.IsInteger)).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>A sample value as the format writes it: integers without a point, <c>NaN</c>, <c>+Inf</c>, <c>-Inf</c>.</summary>
    public static string FormatValue(double value, bool isInteger) =>
        double.IsNaN(value) ? "NaN"
        : double.IsPositiveInfinity(value) ? "+Inf"
        : double.IsNegativeInfinity(value) ? "-Inf"
        : isInteger ? ((long)value).ToString(CultureInfo.InvariantCulture)
        : value.ToString("R", CultureInfo.InvariantCulture);

    private static bool IsCounter(Instrument instrument)
    {
        Type type = instrument.GetType();
        return type.IsGenericType && type.GetGenericTypeDefinition() is var definition
            && (definition == typeof(ObservableCounter<>) || definition == typeof(Counter<>));
    }

    private static string? UnitSuffix(string? unit)
    {
        if (string.IsNullOrEmpty(unit))
        {
            return null;
        }

        // Annotations in braces carry no unit ("{operation}" is a count of operations).
        string bare = unit;
        int open;
        while ((open = bare.IndexOf('{', StringComparison.Ordinal)) >= 0)
        {
            int close = bare.IndexOf('}', open);
            bare = close < 0 ? bare[..open] : bare[..open] + bare[(close + 1)..];
        }

        return bare switch
        {
            "" or "1" => null,
            "By" => "bytes",
            "s" => "seconds",
            "ms" => "milliseconds",
            _ => Sanitize(bare),
        };
    }

    // Metric and label names may hold [a-zA-Z0-9_] only (':' is for recording rules); anything else becomes '_'.
    private static string Sanitize(string name)
    {
        var text = new StringBuilder(name.Length);
        foreach (char c in name)
        {
            bool ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_';
            char next = ok ? c : '_';
            if (next == '_' && text.Length > 0 && text[^1] == '_')
            {
                continue;
            }

            text.Append(next);
        }

        if (text.Length == 0 || char.IsAsciiDigit(text[0]))
        {
            text.Insert(0, '_');
        }

        return text.ToString();
    }

    private static string EscapeHelp(string text) => text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeLabel(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
