using System.Diagnostics;
using System.Diagnostics.Metrics;
using Distcache.Protocol;

namespace Distcache.Proxy;

/// <summary>
/// The <c>Distcache.Proxy</c> meter: a <see cref="DistcacheProxy"/>'s counters and server links as
/// <see cref="System.Diagnostics.Metrics"/> instruments, for <c>dotnet-counters</c>, OpenTelemetry or dc_client's
/// <c>-metrics</c> endpoint. Every instrument is observable: it reads what the proxy counts anyway when a listener
/// collects, so forwarding does no work for it. docs/operations.md lists them.
/// </summary>
public sealed class ProxyMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Distcache.Proxy";

    /// <summary>The attribute that names a request's operation: add, get, remove, have or other.</summary>
    internal const string OperationAttribute = "distcache.operation";

    private const string ServerAttribute = "distcache.server";

    // From a fast answer on one host (tens of microseconds) to the -timeout range, in seconds.
    private static readonly double[] DurationBuckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

    private readonly long _startedAt = Stopwatch.GetTimestamp();

    /// <summary>Creates the meter and its instruments over <paramref name="proxy"/>.</summary>
    /// <param name="proxy">The proxy whose counters are reported.</param>
    public ProxyMetrics(DistcacheProxy proxy)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        Meter = new Meter(MeterName, typeof(ProxyMetrics).Assembly.GetName().Version?.ToString(3));
        ProxyStatistics statistics = proxy.Statistics;

        Meter.CreateObservableGauge("distcache.proxy.uptime", () => Stopwatch.GetElapsedTime(_startedAt).TotalSeconds, "s", "Time since the proxy started");
        Meter.CreateObservableCounter("distcache.proxy.requests", () => (Measurement<long>[])
        [
            new(statistics.RequestsOf(Operation.Add), new KeyValuePair<string, object?>(OperationAttribute, Operation.Add.ToMetricName())),
            new(statistics.RequestsOf(Operation.Get), new KeyValuePair<string, object?>(OperationAttribute, Operation.Get.ToMetricName())),
            new(statistics.RequestsOf(Operation.Remove), new KeyValuePair<string, object?>(OperationAttribute, Operation.Remove.ToMetricName())),
            new(statistics.RequestsOf(Operation.Have), new KeyValuePair<string, object?>(OperationAttribute, Operation.Have.ToMetricName())),
            new(statistics.OtherRequests, new KeyValuePair<string, object?>(OperationAttribute, ((Operation)byte.MaxValue).ToMetricName())),
        ], "{request}", "Complete requests read from local connections, by operation");
        proxy.RequestDuration = Meter.CreateHistogram(
            "distcache.proxy.request.duration", "s",
            "Time from forwarding a request to a server to handing its answer to the local connection that asked",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        Meter.CreateObservableCounter("distcache.proxy.requests.forwarded", () => statistics.Forwarded, "{request}", "Requests forwarded to a server");
        Meter.CreateObservableCounter("distcache.proxy.requests.disconnected", () => statistics.AnsweredDisconnected, "{request}", "Requests the proxy answered DISCONNECTED itself: no server linked, or the link was lost before the answer came");
        Meter.CreateObservableCounter("distcache.proxy.responses", () => (Measurement<long>[])
        [
            new(statistics.ResponsesDelivered, new KeyValuePair<string, object?>("distcache.outcome", "delivered")),
            new(statistics.ResponsesDiscarded, new KeyValuePair<string, object?>("distcache.outcome", "discarded")),
            new(statistics.UnknownResponses, new KeyValuePair<string, object?>("distcache.outcome", "unknown")),
        ], "{response}", "Server answers: delivered to the local connection that asked, discarded (it had gone), unknown (no request in flight had the uid)");

        Meter.CreateObservableUpDownCounter("distcache.proxy.connections.open", () => statistics.OpenConnections, "{connection}", "Local connections open now");
        Meter.CreateObservableCounter("distcache.proxy.connections.accepted", () => statistics.ConnectionsAccepted, "{connection}", "Local connections accepted");
        Meter.CreateObservableCounter("distcache.proxy.connections.dropped", () => (Measurement<long>[])
        [
            new(statistics.ClientViolations, new KeyValuePair<string, object?>("distcache.reason", "protocol_violation")),
            new(statistics.ClientsOverflowed, new KeyValuePair<string, object?>("distcache.reason", "overflow")),
            new(statistics.IdleClosed, new KeyValuePair<string, object?>("distcache.reason", "idle")),
        ], "{connection}", "Local connections the proxy closed: broke the framing rules, left too many answers unread, or idle beyond -idle");

        Meter.CreateObservableUpDownCounter("distcache.proxy.link.up", () => Links(proxy, static link => link.IsConnected ? 1 : 0), "{link}", "1 while the link to the server is up, 0 while requests for it cannot be forwarded");
        Meter.CreateObservableCounter("distcache.proxy.link.connects", () => Links(proxy, static link => link.Connects), "{connection}", "Connections to the server established (the first one and every reconnect)");
        Meter.CreateObservableCounter("distcache.proxy.link.losses", () => Links(proxy, static link => link.Losses), "{connection}", "Connections to the server lost (closed by it, reset, timed out, broken protocol)");
        Meter.CreateObservableCounter("distcache.proxy.link.timeouts", () => statistics.ServerTimeouts, "{connection}", "Server links given up because the oldest request waited longer than -timeout (also counted as losses)");
        Meter.CreateObservableUpDownCounter("distcache.proxy.link.in_flight", () => Links(proxy, static link => link.InFlight), "{request}", "Requests waiting for the server's answers now");
    }

    /// <summary>The meter; disposed with this object.</summary>
    public Meter Meter { get; }

    /// <inheritdoc/>
    public void Dispose() => Meter.Dispose();

    private static Measurement<long>[] Links(DistcacheProxy proxy, Func<ProxyLinkState, long> value) =>
        [.. proxy.GetLinkStates().Select(link => new Measurement<long>(value(link), new KeyValuePair<string, object?>(ServerAttribute, link.Server.ToString())))];
}
