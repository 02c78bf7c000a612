using System.Diagnostics;
using System.Diagnostics.Metrics;
using Distcache.Protocol;
using Distcache.Storage;

namespace Distcache.Server;

/// <summary>
/// The <c>Distcache.Server</c> meter: a running <see cref="DistcacheServer"/>'s counters as
/// <see cref="System.Diagnostics.Metrics"/> instruments, for <c>dotnet-counters</c>, OpenTelemetry or dc_server's
/// <c>-metrics</c> endpoint. Every instrument is observable: it reads the counters the server keeps anyway when a
/// listener collects, so the request path does no work for it. Names follow the OpenTelemetry conventions;
/// docs/operations.md lists them.
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Distcache.Server";

    private static readonly Operation[] AllOperations = [Operation.Add, Operation.Get, Operation.Remove, Operation.Have];
    private static readonly OperationOutcome[] AllOutcomes = [OperationOutcome.Ok, OperationOutcome.NotFound, OperationOutcome.Exists, OperationOutcome.Invalid, OperationOutcome.Failed];

    private readonly DistcacheServer _server;
    private readonly long _startedAt = Stopwatch.GetTimestamp();
    private readonly Lock _countGate = new();
    private long _lastSessionCount;
    private bool _countPending;

    /// <summary>Creates the meter and its instruments over <paramref name="server"/>.</summary>
    /// <param name="server">The server whose counters are reported.</param>
    public ServerMetrics(DistcacheServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        _server = server;
        Meter = new Meter(MeterName, typeof(ServerMetrics).Assembly.GetName().Version?.ToString(3));
        ServerStatistics statistics = server.Statistics;

        Meter.CreateObservableCounter("distcache.server.operations", ObserveOperations, "{operation}",
            "Requests answered, by operation (add, get, remove, have) and outcome (ok, not_found, exists, invalid, failed); get ok is a hit, get not_found a miss");
        Meter.CreateObservableUpDownCounter("distcache.server.sessions", ObserveSessions, "{session}", "Live sessions stored");
        Meter.CreateObservableGauge("distcache.server.uptime", () => Stopwatch.GetElapsedTime(_startedAt).TotalSeconds, "s", "Time since the server started");

        Meter.CreateObservableUpDownCounter("distcache.server.connections.open", () => statistics.ConnectionsOpen, "{connection}", "Connections open now");
        Meter.CreateObservableCounter("distcache.server.connections.accepted", () => statistics.ConnectionsAccepted, "{connection}", "Connections accepted (and served)");
        Meter.CreateObservableCounter("distcache.server.connections.refused", () => statistics.ConnectionsRefused, "{connection}", "Connections closed at once because -maxconns were open");
        Meter.CreateObservableCounter("distcache.server.connections.timeouts", () => (Measurement<long>[])
        [
            new(statistics.MessageTimeouts, new KeyValuePair<string, object?>("distcache.timeout", "message")),
            new(statistics.IdleTimeouts, new KeyValuePair<string, object?>("distcache.timeout", "idle")),
            new(statistics.WriteTimeouts, new KeyValuePair<string, object?>("distcache.timeout", "write")),
        ], "{connection}", "Connections closed by a timeout: message (-msgtimeout, also a protocol violation), idle (-idle), write (-writetimeout)");
        Meter.CreateObservableCounter("distcache.server.protocol.violations", () => statistics.ProtocolViolations, "{connection}", "Connections closed because the peer broke the protocol (a message cut short included)");
        Meter.CreateObservableCounter("distcache.server.tls.handshake_failures", () => statistics.HandshakeFailures, "{connection}", "Connections closed because the TLS handshake failed or the client certificate was missing or refused");
        Meter.CreateObservableCounter("distcache.server.identities.refused", () => statistics.IdentitiesRefused, "{connection}", "Connections closed because the client's identity has no partition (-partition-map)");

        if (server.Store is MemorySessionStore memory)
        {
            // Only the memory store bounds and evicts; Redis's maxmemory does that for a Redis store, where Redis's
            // own metrics tell it.
            Meter.CreateObservableUpDownCounter("distcache.server.storage.usage", () => memory.BytesUsed, "By", "Bytes the live sessions account for (ids, data and per-session overhead), bounded by -memory");
            Meter.CreateObservableUpDownCounter("distcache.server.storage.limit", () => memory.MaxBytes, "By", "The -memory bound");
            Meter.CreateObservableUpDownCounter("distcache.server.sessions.limit", () => (long)memory.MaxSessions, "{session}", "The -sessions bound (0: none)");
            Meter.CreateObservableCounter("distcache.server.evictions", () => (Measurement<long>[])
            [
                new(memory.EvictedByCount, new KeyValuePair<string, object?>("distcache.eviction.reason", "sessions")),
                new(memory.EvictedByBytes, new KeyValuePair<string, object?>("distcache.eviction.reason", "memory")),
            ], "{session}", "Live sessions evicted to make room for an ADD, by the bound that was reached (-sessions or -memory)");
            Meter.CreateObservableCounter("distcache.server.expirations", () => memory.Expired, "{session}", "Expired sessions reclaimed");
        }
    }

    /// <summary>The meter; disposed with this object.</summary>
    public Meter Meter { get; }

    /// <inheritdoc/>
    public void Dispose() => Meter.Dispose();

    private IEnumerable<Measurement<long>> ObserveOperations()
    {
        OperationTotals totals = _server.Statistics.GetOperationTotals();
        var measurements = new List<Measurement<long>>(AllOperations.Length * AllOutcomes.Length);
        foreach (Operation operation in AllOperations)
        {
            foreach (OperationOutcome outcome in AllOutcomes)
            {
                // Outcomes an operation cannot have are left out rather than reported as a constant 0.
                if (outcome == OperationOutcome.Exists && operation != Operation.Add)
                {
                    continue;
                }

                if (outcome == OperationOutcome.NotFound && operation == Operation.Add)
                {
                    continue;
                }

                measurements.Add(new Measurement<long>(totals.Get(operation, outcome),
                    new KeyValuePair<string, object?>("distcache.operation", OperationName(operation)),
                    new KeyValuePair<string, object?>("distcache.outcome", OutcomeName(outcome))));
            }
        }

        return measurements;
    }

    /// <summary>The attribute value of an operation: <c>add</c>, <c>get</c>, <c>remove</c>, <c>have</c>.</summary>
    public static string OperationName(Operation operation) => operation.IsDefined()
        ? operation.ToMetricName()
        : throw new ArgumentOutOfRangeException(nameof(operation), operation, "not a distcache operation");

    /// <summary>The attribute value of an outcome: <c>ok</c>, <c>not_found</c>, <c>exists</c>, <c>invalid</c>, <c>failed</c>.</summary>
    public static string OutcomeName(OperationOutcome outcome) => outcome switch
    {
        OperationOutcome.Ok => "ok",
        OperationOutcome.NotFound => "not_found",
        OperationOutcome.Exists => "exists",
        OperationOutcome.Invalid => "invalid",
        OperationOutcome.Failed => "failed",
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "not an outcome"),
    };

    // The memory store counts at once; a remote store's count may take a round trip (Redis refreshes it at most every
    // 30 s), and an observable instrument's callback must not block: it reports the last count and asks for the next.
    private long ObserveSessions()
    {
        ValueTask<long> counting;
        lock (_countGate)
        {
            if (_countPending)
            {
                return _lastSessionCount;
            }

            try
            {
                counting = _server.Store.CountAsync();
            }
            catch (ObjectDisposedException)
            {
                return _lastSessionCount;
            }

            if (counting.IsCompletedSuccessfully)
            {
                return _lastSessionCount = counting.Result;
            }

            _countPending = true;
        }

        _ = RefreshAsync(counting.AsTask());
        return Volatile.Read(ref _lastSessionCount);
    }

    private async Task RefreshAsync(Task<long> counting)
    {
        try
        {
            long count = await counting.ConfigureAwait(false);
            lock (_countGate)
            {
                _lastSessionCount = count;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The store is unreachable or gone: the last count stands until a count succeeds.
        }
        finally
        {
            lock (_countGate)
            {
                _countPending = false;
            }
        }
    }
}
