using System.Diagnostics;
using System.Diagnostics.Metrics;
using Distcache.Networking;
using Distcache.Protocol;

namespace Distcache.Client;

/// <summary>
/// The <c>Distcache.Client</c> meter, shared by every <see cref="DistcacheClient"/> of the process (as
/// System.Net.Http's meters are by every HttpClient): operations by kind and outcome, how long answered ones took,
/// and the connections made and lost. Read it with <c>dotnet-counters monitor --counters Distcache.Client</c> or an
/// OpenTelemetry meter provider; docs/client.md lists the instruments. With no listener, a request pays one check of
/// two flags.
/// </summary>
public static class ClientMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Distcache.Client";

    private const string OperationAttribute = "distcache.operation";
    private const string OutcomeAttribute = "distcache.outcome";

    // OpenTelemetry's name for the address of the server a client talks to.
    private const string ServerAttribute = "server.address";

    private static readonly Meter Meter = new(MeterName, typeof(ClientMetrics).Assembly.GetName().Version?.ToString(3));

    private static readonly Counter<long> Operations = Meter.CreateCounter<long>(
        "distcache.client.operations", "{operation}",
        "Operations completed, by kind and outcome: ok (stored, found, removed, present), notok (not found, absent), exists (ADD found a live session), disconnected (a proxy without its server), refused (any other status), timeout, canceled, failed (the connection broke)");

    // A cache answers in tens of microseconds on a host and in a millisecond or two across a network; the buckets
    // cover that range finely and the operation timeout's range coarsely.
    private static readonly Histogram<double> Duration = Meter.CreateHistogram(
        "distcache.client.operation.duration", "s",
        "Time from sending a request to its answer, for answered requests",
        tags: null,
        advice: new InstrumentAdvice<double>
        {
            HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        });

    private static readonly Counter<long> Connects = Meter.CreateCounter<long>(
        "distcache.client.connects", "{connection}", "Connections established to a cache (the first and every reconnect)");

    private static readonly Counter<long> Losses = Meter.CreateCounter<long>(
        "distcache.client.connection.losses", "{connection}", "Connections to a cache lost (closed by it, reset, unresponsive, broken protocol)");

    internal static void Answered(Operation operation, ReadOnlySpan<byte> payload, long sentTimestamp, Address? server)
    {
        if (!Operations.Enabled && !Duration.Enabled)
        {
            return;
        }

        string outcome = payload.Length switch
        {
            0 => "disconnected",
            1 => (StatusCode)payload[0] switch
            {
                StatusCode.Ok => "ok",
                StatusCode.NotOk => "notok",
                StatusCode.Disconnected => "disconnected",
                StatusCode.AddErrMatchingSession => "exists",
                _ => "refused",
            },
            _ => "ok",
        };

        string kind = operation.ToMetricName();
        var address = new KeyValuePair<string, object?>(ServerAttribute, server?.ToString());
        Operations.Add(1, new KeyValuePair<string, object?>(OperationAttribute, kind), new KeyValuePair<string, object?>(OutcomeAttribute, outcome), address);
        if (sentTimestamp != 0)
        {
            Duration.Record(Stopwatch.GetElapsedTime(sentTimestamp).TotalSeconds, new KeyValuePair<string, object?>(OperationAttribute, kind), address);
        }
    }

    internal static void Failed(Operation operation, Exception error, Address? server)
    {
        if (Operations.Enabled)
        {
            string outcome = error switch
            {
                TimeoutException => "timeout",
                OperationCanceledException => "canceled",
                _ => "failed",
            };
            Operations.Add(1, new KeyValuePair<string, object?>(OperationAttribute, operation.ToMetricName()), new KeyValuePair<string, object?>(OutcomeAttribute, outcome), new KeyValuePair<string, object?>(ServerAttribute, server?.ToString()));
        }
    }

    internal static void Connected(Address server) => Connects.Add(1, new KeyValuePair<string, object?>(ServerAttribute, server.ToString()));

    internal static void Lost(Address server) => Losses.Add(1, new KeyValuePair<string, object?>(ServerAttribute, server.ToString()));
}
