namespace Distcache.Server;

/// <summary>Counters a running server keeps for operators. Thread-safe; values are read without locking.</summary>
public sealed class ServerStatistics
{
    private long _operations;
    private long _connectionsAccepted;
    private long _connectionsOpen;
    private long _connectionsRefused;
    private long _violations;
    private long _messageTimeouts;
    private long _idleTimeouts;
    private long _writeTimeouts;
    private long _handshakeFailures;
    private long _identitiesRefused;

    // Operations by kind and outcome: each connection counts its own (OperationCounts); the closed ones' are folded
    // in here. The gate is taken once when a connection opens and once when it closes, never per request, and makes
    // a close (fold and forget) atomic to a reader, so that no count is read twice or missed.
    private readonly Lock _countsGate = new();
    private readonly HashSet<OperationCounts> _liveCounts = [];
    private readonly long[] _closedCounts = new long[OperationCounts.Slots];

    /// <summary>Requests answered since start (1.5.1's "total operations").</summary>
    public long Operations => Volatile.Read(ref _operations);

    /// <summary>Connections accepted since start.</summary>
    public long ConnectionsAccepted => Volatile.Read(ref _connectionsAccepted);

    /// <summary>Connections open now.</summary>
    public long ConnectionsOpen => Volatile.Read(ref _connectionsOpen);

    /// <summary>Connections refused because the connection cap was reached.</summary>
    public long ConnectionsRefused => Volatile.Read(ref _connectionsRefused);

    /// <summary>Connections closed because the peer broke the protocol.</summary>
    public long ProtocolViolations => Volatile.Read(ref _violations);

    /// <summary>Connections closed because a message did not arrive in full within the message timeout (also
    /// counted in <see cref="ProtocolViolations"/>, as a truncated message).</summary>
    public long MessageTimeouts => Volatile.Read(ref _messageTimeouts);

    /// <summary>Connections closed because they stayed idle beyond the idle timeout.</summary>
    public long IdleTimeouts => Volatile.Read(ref _idleTimeouts);

    /// <summary>Connections dropped because they did not read their responses within the write timeout.</summary>
    public long WriteTimeouts => Volatile.Read(ref _writeTimeouts);

    /// <summary>Connections closed because their TLS handshake failed or timed out, or the client's certificate was
    /// missing or not acceptable.</summary>
    public long HandshakeFailures => Volatile.Read(ref _handshakeFailures);

    /// <summary>Connections closed after a good handshake because the client's identity has no access (not in the mapping file).</summary>
    public long IdentitiesRefused => Volatile.Read(ref _identitiesRefused);

    /// <summary>Requests answered since start, by operation and outcome (the sum over every connection, open or closed).</summary>
    /// <returns>A snapshot; requests answered meanwhile are not in it.</returns>
    public OperationTotals GetOperationTotals()
    {
        long[] totals = new long[OperationCounts.Slots];
        lock (_countsGate)
        {
            _closedCounts.CopyTo(totals, 0);
            foreach (OperationCounts counts in _liveCounts)
            {
                counts.AddTo(totals);
            }
        }

        return new OperationTotals(totals);
    }

    /// <summary>Starts counting a new connection's operations.</summary>
    internal OperationCounts TrackOperations()
    {
        var counts = new OperationCounts();
        lock (_countsGate)
        {
            _liveCounts.Add(counts);
        }

        return counts;
    }

    /// <summary>Folds a closed connection's operations into the totals.</summary>
    internal void RetireOperations(OperationCounts counts)
    {
        lock (_countsGate)
        {
            if (_liveCounts.Remove(counts))
            {
                counts.AddTo(_closedCounts);
            }
        }
    }

    internal void HandshakeFailed() => Interlocked.Increment(ref _handshakeFailures);

    internal void IdentityRefused() => Interlocked.Increment(ref _identitiesRefused);

    internal void MessageTimedOut() => Interlocked.Increment(ref _messageTimeouts);

    internal void IdleTimedOut() => Interlocked.Increment(ref _idleTimeouts);

    internal void WriteTimedOut() => Interlocked.Increment(ref _writeTimeouts);

    internal void AddOperations(long count) => Interlocked.Add(ref _operations, count);

    internal void ConnectionOpened()
    {
        Interlocked.Increment(ref _connectionsAccepted);
        Interlocked.Increment(ref _connectionsOpen);
    }

    internal void ConnectionClosed() => Interlocked.Decrement(ref _connectionsOpen);

    internal void ConnectionRefused() => Interlocked.Increment(ref _connectionsRefused);

    /// <summary>Counts one more violation and returns the count since start, for the log line of the close.</summary>
    internal long Violation() => Interlocked.Increment(ref _violations);

    /// <summary>All the counters on one line, for operators (dc_server prints it when it exits).</summary>
    public string Summary() => string.Create(
        System.Globalization.CultureInfo.InvariantCulture,
        $"{Operations} operations, {ConnectionsAccepted} connections accepted, {ConnectionsRefused} refused, {ProtocolViolations} protocol violations ({MessageTimeouts} message timeouts), {IdleTimeouts} idle timeouts, {WriteTimeouts} write timeouts");
}
