using System.Diagnostics.Metrics;
using System.Text;

namespace Distcache.Hosting.Tests;

/// <summary>The Prometheus text rendering of the tools' meters and the endpoint's answers to request heads.</summary>
public sealed class MetricsExpositionTests
{
    [Theory]
    [InlineData("distcache.server.operations", "{operation}", true, "distcache_server_operations_total")]
    [InlineData("distcache.server.storage.usage", "By", false, "distcache_server_storage_usage_bytes")]
    [InlineData("distcache.server.uptime", "s", false, "distcache_server_uptime_seconds")]
    [InlineData("distcache.server.sessions", "{session}", false, "distcache_server_sessions")]
    [InlineData("distcache.proxy.link.up", "{link}", false, "distcache_proxy_link_up")]
    [InlineData("a.ratio", "1", false, "a_ratio")]
    [InlineData("odd-name..x", null, true, "odd_name_x_total")]
    [InlineData("requests_total", "{request}", true, "requests_total")]
    public void Names_follow_the_OpenTelemetry_rules(string name, string? unit, bool counter, string expected) =>
        Assert.Equal(expected, PrometheusExposition.MetricName(name, unit, counter));

    [Fact]
    public void Observable_instruments_render_with_help_type_labels_and_values()
    {
        string meterName = "Test.Exposition." + Guid.NewGuid().ToString("N");
        using var meter = new Meter(meterName);
        meter.CreateObservableCounter("test.operations", () => (Measurement<long>[])
        [
            new(3, new KeyValuePair<string, object?>("test.kind", "a\"b")),
            new(4, new KeyValuePair<string, object?>("test.kind", "c")),
        ], "{operation}", "Operations\nby kind");
        meter.CreateObservableGauge("test.uptime", () => 1.5, "s");
        meter.CreateObservableUpDownCounter("test.bytes", () => 1024L, "By", "Bytes");
        // Not observable, and not a histogram: a collector that reads on demand does not aggregate it, so it is not listed.
        meter.CreateCounter<long>("test.pushed").Add(1);

        using var collector = new MetricsCollector(meterName);
        string text = PrometheusExposition.Render(collector.Collect());
        Assert.Equal(
            """
            # HELP test_operations_total Operations\nby kind
            # TYPE test_operations_total counter
            test_operations_total{test_kind="a\"b"} 3
            test_operations_total{test_kind="c"} 4
            # TYPE test_uptime_seconds gauge
            test_uptime_seconds 1.5
            # HELP test_bytes Bytes
            # TYPE test_bytes gauge
            test_bytes 1024

            """.ReplaceLineEndings("\n"),
            text);
    }

    [Fact]
    public void Histograms_are_aggregated_from_the_collectors_start_into_their_advised_buckets_and_render_cumulative()
    {
        string meterName = "Test.Histogram." + Guid.NewGuid().ToString("N");
        using var meter = new Meter(meterName);
        Histogram<double> duration = meter.CreateHistogram("test.request.duration", "s", "Time to answer", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.01, 0.1] });

        // Before the collector exists: nobody keeps it.
        duration.Record(0.5, new KeyValuePair<string, object?>("op", "get"));
        using var collector = new MetricsCollector(meterName);
        foreach (double value in new[] { 0.0005, 0.001, 0.002, 0.05, 7 })
        {
            duration.Record(value, new KeyValuePair<string, object?>("op", "get"));
        }

        duration.Record(0.02, new KeyValuePair<string, object?>("op", "add"));
        string text = PrometheusExposition.Render(collector.Collect());
        Assert.Equal(
            """
            # HELP test_request_duration_seconds Time to answer
            # TYPE test_request_duration_seconds histogram
            test_request_duration_seconds_bucket{op="get",le="0.001"} 2
            test_request_duration_seconds_bucket{op="get",le="0.01"} 3
            test_request_duration_seconds_bucket{op="get",le="0.1"} 4
            test_request_duration_seconds_bucket{op="get",le="+Inf"} 5
            test_request_duration_seconds_sum{op="get"} 7.0535
            test_request_duration_seconds_count{op="get"} 5
            test_request_duration_seconds_bucket{op="add",le="0.001"} 0
            test_request_duration_seconds_bucket{op="add",le="0.01"} 0
            test_request_duration_seconds_bucket{op="add",le="0.1"} 1
            test_request_duration_seconds_bucket{op="add",le="+Inf"} 1
            test_request_duration_seconds_sum{op="add"} 0.02
            test_request_duration_seconds_count{op="add"} 1

            """.ReplaceLineEndings("\n"),
            text);
    }

    [Fact]
    public void Histogram_values_from_many_threads_are_all_counted()
    {
        string meterName = "Test.Histogram." + Guid.NewGuid().ToString("N");
        using var meter = new Meter(meterName);
        Histogram<double> duration = meter.CreateHistogram<double>("test.duration", "s");
        using var collector = new MetricsCollector(meterName);
        Parallel.For(0, 8, _ =>
        {
            for (int i = 0; i < 9_999; i++)
            {
                duration.Record(i % 3);
            }
        });

        MetricSample sample = Assert.Single(collector.Collect());
        Assert.Equal(8 * 9_999, sample.Histogram!.Count);
        Assert.Equal(8 * 3333 * 3, sample.Histogram.Sum);
    }

    [Fact]
    public void Instruments_of_other_meters_are_left_out()
    {
        string mine = "Test.Mine." + Guid.NewGuid().ToString("N");
        string other = "Test.Other." + Guid.NewGuid().ToString("N");
        using var collector = new MetricsCollector(mine);
        using var meter = new Meter(mine);
        using var otherMeter = new Meter(other);
        meter.CreateObservableGauge("created.after.the.collector", () => 7L);
        otherMeter.CreateObservableGauge("not.mine", () => 8L);
        IReadOnlyList<MetricSample> samples = collector.Collect();
        MetricSample sample = Assert.Single(samples);
        Assert.Equal(7, sample.Value);
    }

    [Theory]
    [InlineData("GET /metrics HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 200 OK", true)]
    [InlineData("GET /metrics?x=1 HTTP/1.0\r\n", "HTTP/1.1 200 OK", true)]
    [InlineData("HEAD /metrics HTTP/1.1\r\n", "HTTP/1.1 200 OK", false)]
    [InlineData("GET / HTTP/1.1\r\n", "HTTP/1.1 404 Not Found", false)]
    [InlineData("POST /metrics HTTP/1.1\r\n", "HTTP/1.1 405 Method Not Allowed", false)]
    [InlineData("hello\r\n", "HTTP/1.1 400 Bad Request", false)]
    [InlineData("GET /metrics SPDY/3\r\n", "HTTP/1.1 400 Bad Request", false)]
    public void Request_heads_get_the_right_answer(string head, string statusLine, bool hasExposition)
    {
        bool rendered = false;
        string response = Encoding.UTF8.GetString(MetricsEndpoint.Respond(head, () =>
        {
            rendered = true;
            return "x_total 1\n";
        }));
        Assert.StartsWith(statusLine + "\r\n", response, StringComparison.Ordinal);
        Assert.Contains("Connection: close\r\n", response, StringComparison.Ordinal);
        Assert.Equal(hasExposition, response.EndsWith("\r\n\r\nx_total 1\n", StringComparison.Ordinal));
        Assert.Equal(statusLine.EndsWith("200 OK", StringComparison.Ordinal), rendered);
    }
}
