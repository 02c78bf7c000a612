using Distcache.Protocol;

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

    // Operations by kind and outcome, counted by each thread in an array of its own (one writer each, no atomic
    // operation and no shared cache line per request), summed when read. A thread's array is made, under the gate,
    // the first time it counts for this server; a connection costs nothing here.
    private readonly Lock _countsGate = new();
    private readonly Dictionary<int, OperationCounts> _threadCounts = [];

    // The array of the server the calling thread counted for last: the fast path's one check.
    [ThreadStatic]
    private static ServerStatistics? t_owner;

    [ThreadStatic]
    private static OperationCounts? t_counts;

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

    /// <summary>Requests answered since start, by operation and outcome.</summary>
    /// <returns>A snapshot; requests answered meanwhile are not in it.</returns>
    public OperationTotals GetOperationTotals()
    {
        long[] totals = new long[OperationCounts.Slots];
        lock (_countsGate)
        {
            foreach (OperationCounts counts in _threadCounts.Values)
            {
                counts.AddTo(totals);
            }
        }

        return new OperationTotals(totals);
    }

    /// <summary>Counts one answered request in the calling thread's own array.</summary>
    internal void CountOperation(Operation operation, OperationOutcome outcome)
    {
        OperationCounts? counts = t_counts;
        if (!ReferenceEquals(t_owner, this) || counts is null)
        {
            counts = CountsOfThisThread();
        }

        counts.Count(operation, outcome);
    }

    private OperationCounts CountsOfThisThread()
    {
        OperationCounts? counts;
        lock (_countsGate)
        {
            int thread = Environment.CurrentManagedThreadId;
            if (!_threadCounts.TryGetValue(thread, out counts))
            {
                _threadCounts.Add(thread, counts = new OperationCounts());
            }
        }

        t_owner = this;
        t_counts = counts;
        return counts;
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
