using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Distcache.Hosting;

/// <summary>One value an instrument reported, with its attributes.</summary>
/// <param name="Instrument">The instrument.</param>
/// <param name="Value">The value (for a histogram, its count).</param>
/// <param name="IsInteger">Whether it was reported as an integer (printed without a decimal point).</param>
/// <param name="Tags">Its attributes.</param>
/// <param name="Histogram">For a histogram, its buckets since the collector started; null otherwise.</param>
public readonly record struct MetricSample(Instrument Instrument, double Value, bool IsInteger, KeyValuePair<string, object?>[] Tags, HistogramSnapshot? Histogram = null);

/// <summary>A histogram's state: how many values fell at or below each bound (not cumulated), above the last, and
/// their sum.</summary>
/// <param name="Bounds">The buckets' upper bounds, ascending.</param>
/// <param name="Counts">Values per bucket, one more than <paramref name="Bounds"/> (the last is above every bound).</param>
/// <param name="Sum">The sum of the values.</param>
public sealed record HistogramSnapshot(double[] Bounds, long[] Counts, double Sum)
{
    /// <summary>How many values in all.</summary>
    public long Count => Counts.Sum();
}

/// <summary>
/// Reads the instruments of the named meters on demand (a scrape), through a <see cref="MeterListener"/>. Observable
/// instruments report current totals when asked, so nothing is kept between scrapes for them; the request-duration
/// histograms are the one kind recorded as requests happen, and are aggregated here into their buckets (the
/// instrument's advised bounds, or OpenTelemetry's defaults) from the moment the collector starts.
/// </summary>
public sealed class MetricsCollector : IDisposable
{
    private static readonly double[] DefaultBounds = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

    private readonly MeterListener _listener = new();
    private readonly Lock _gate = new();
    private readonly HashSet<string> _meters;
    private readonly List<MetricSample> _samples = [];
    private readonly List<HistogramAggregate> _histograms = [];

    /// <summary>Starts listening to the meters with these names, those created before and after alike.</summary>
    /// <param name="meterNames">Meter names, e.g. <c>Distcache.Server</c>.</param>
    public MetricsCollector(params string[] meterNames)
    {
        _meters = [.. meterNames];
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (!_meters.Contains(instrument.Meter.Name))
            {
                return;
            }

            if (instrument.IsObservable)
            {
                listener.EnableMeasurementEvents(instrument);
            }
            else if (instrument is Histogram<double> histogram)
            {
                var aggregate = new HistogramAggregate(histogram, histogram.Advice?.HistogramBucketBoundaries is { Count: > 0 } bounds ? [.. bounds] : DefaultBounds);
                lock (_histograms)
                {
                    _histograms.Add(aggregate);
                }

                listener.EnableMeasurementEvents(instrument, aggregate);
            }
        };
        _listener.MeasurementsCompleted = (instrument, state) =>
        {
            if (state is HistogramAggregate aggregate)
            {
                lock (_histograms)
                {
                    _histograms.Remove(aggregate);
                }
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, true, tags.ToArray())));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, true, tags.ToArray())));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, state) =>
        {
            // A histogram's values come from any thread at any time; the observable ones only inside Collect.
            if (state is HistogramAggregate aggregate)
            {
                aggregate.Record(value, tags);
            }
            else
            {
                _samples.Add(new MetricSample(instrument, value, false, tags.ToArray()));
            }
        });
        _listener.SetMeasurementEventCallback<float>((instrument, value, tags, _) => _samples.Add(new MetricSample(instrument, value, false, tags.ToArray())));
        _listener.Start();
    }

    /// <summary>Asks every observable instrument for its values now, then adds the histograms.</summary>
    /// <returns>The values, the observable instruments' in the order they were created, then the histograms'.</returns>
    public IReadOnlyList<MetricSample> Collect()
    {
        // The observable callbacks run on this thread, inside RecordObservableInstruments; the gate keeps two scrapes
        // apart.
        lock (_gate)
        {
            _samples.Clear();
            _listener.RecordObservableInstruments();
            lock (_histograms)
            {
                foreach (HistogramAggregate histogram in _histograms)
                {
                    histogram.AddSamples(_samples);
                }
            }

            return [.. _samples];
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _listener.Dispose();

    /// <summary>One histogram's buckets, one series per set of attributes.</summary>
    private sealed class HistogramAggregate(Histogram<double> instrument, double[] bounds)
    {
        private readonly List<(KeyValuePair<string, object?>[] Tags, long[] Counts, double[] Sum)> _series = [];

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            int bucket = Array.BinarySearch(bounds, value);
            bucket = bucket >= 0 ? bucket : ~bucket;
            lock (_series)
            {
                // A handful of series (one per operation): a scan that compares without allocating beats hashing.
                var series = Find(tags);
                series.Counts[bucket]++;
                series.Sum[0] += value;
            }
        }

        public void AddSamples(List<MetricSample> samples)
        {
            lock (_series)
            {
                foreach (var (tags, counts, sum) in _series)
                {
                    var snapshot = new HistogramSnapshot(bounds, [.. counts], sum[0]);
                    samples.Add(new MetricSample(instrument, snapshot.Count, true, tags, snapshot));
                }
            }
        }

        private (KeyValuePair<string, object?>[] Tags, long[] Counts, double[] Sum) Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var series in _series)
            {
                if (Same(series.Tags, tags))
                {
                    return series;
                }
            }

            var added = (tags.ToArray(), new long[bounds.Length + 1], new double[1]);
            _series.Add(added);
            return added;
        }

        private static bool Same(KeyValuePair<string, object?>[] known, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (known.Length != tags.Length)
            {
                return false;
            }

            for (int i = 0; i < known.Length; i++)
            {
                if (!string.Equals(known[i].Key, tags[i].Key, StringComparison.Ordinal) || !Equals(known[i].Value, tags[i].Value))
                {
                    return false;
                }
            }

            return true;
        }
    }
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

                text.Append("# TYPE ").Append(name).Append(sample.Histogram is not null ? " histogram\n" : IsCounter(current) ? " counter\n" : " gauge\n");
            }

            if (sample.Histogram is { } histogram)
            {
                // Prometheus's buckets are cumulative: each counts the values at or below its bound.
                long cumulative = 0;
                for (int i = 0; i <= histogram.Bounds.Length; i++)
                {
                    cumulative += histogram.Counts[i];
                    // Lower case, as Prometheus's own clients write exponents (le="5e-05").
                    string bound = i < histogram.Bounds.Length ? FormatValue(histogram.Bounds[i], isInteger: false).ToLowerInvariant() : "+Inf";
                    text.Append(name).Append("_bucket");
                    AppendLabels(text, sample.Tags, bound);
                    text.Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
                }

                text.Append(name).Append("_sum");
                AppendLabels(text, sample.Tags, null);
                text.Append(' ').Append(FormatValue(histogram.Sum, isInteger: false)).Append('\n');
                text.Append(name).Append("_count");
                AppendLabels(text, sample.Tags, null);
                text.Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
                continue;
            }

            text.Append(name);
            AppendLabels(text, sample.Tags, null);
            text.Append(' ').Append(FormatValue(sample.Value, sample.IsInteger)).Append('\n');
        }

        return text.ToString();
    }

    private static void AppendLabels(StringBuilder text, KeyValuePair<string, object?>[] tags, string? bucketBound)
    {
        if (tags.Length == 0 && bucketBound is null)
        {
            return;
        }

        text.Append('{');
        for (int i = 0; i < tags.Length; i++)
        {
            if (i > 0)
            {
                text.Append(',');
            }

            text.Append(Sanitize(tags[i].Key)).Append("=\"").Append(EscapeLabel(Convert.ToString(tags[i].Value, CultureInfo.InvariantCulture) ?? string.Empty)).Append('"');
        }

        if (bucketBound is not null)
        {
            text.Append(tags.Length > 0 ? "," : string.Empty).Append("le=\"").Append(bucketBound).Append('"');
        }

        text.Append('}');
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
