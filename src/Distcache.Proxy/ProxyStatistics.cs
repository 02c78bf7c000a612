using Distcache.Protocol;

namespace Distcache.Proxy;

/// <summary>Counters of a <see cref="DistcacheProxy"/> since it was created, for operators and tests. Safe to read from any thread.</summary>
public sealed class ProxyStatistics
{
    private long _connectionsAccepted;
    private long _connectionsRefused;
    private long _openConnections;
    // Requests by kind: ADD, GET, REMOVE, HAVE, and any other operation a client sent.
    private readonly long[] _requests = new long[OperationKinds];
    private long _forwarded;
    private long _answeredDisconnected;
    private long _responsesDelivered;
    private long _responsesDiscarded;
    private long _unknownResponses;
    private long _clientViolations;
    private long _clientsOverflowed;
    private long _idleClosed;
    private long _serverConnects;
    private long _serverLinkLosses;
    private long _serverTimeouts;

    /// <summary>Local connections accepted.</summary>
    public long ConnectionsAccepted => Interlocked.Read(ref _connectionsAccepted);

    /// <summary>Local connections closed at once because <see cref="DistcacheProxyOptions.MaxConnections"/> were open.</summary>
    public long ConnectionsRefused => Interlocked.Read(ref _connectionsRefused);

    /// <summary>Local connections open now.</summary>
    public long OpenConnections => Interlocked.Read(ref _openConnections);

    /// <summary>Complete requests read from local connections.</summary>
    public long Requests
    {
        get
        {
            long total = 0;
            for (int i = 0; i < _requests.Length; i++)
            {
                total += Interlocked.Read(ref _requests[i]);
            }

            return total;
        }
    }

    /// <summary>Requests forwarded to the server.</summary>
    public long Forwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Requests the proxy answered itself with <c>DISCONNECTED</c>: the link was down, or went down before their answers came.</summary>
    public long AnsweredDisconnected => Interlocked.Read(ref _answeredDisconnected);

    /// <summary>Server responses passed on to the local connection that asked.</summary>
    public long ResponsesDelivered => Interlocked.Read(ref _responsesDelivered);

    /// <summary>Server responses thrown away because the local connection that asked had gone.</summary>
    public long ResponsesDiscarded => Interlocked.Read(ref _responsesDiscarded);

    /// <summary>Server responses whose uid matched no request in flight (never sent, or already answered); dropped and logged.</summary>
    public long UnknownResponses => Interlocked.Read(ref _unknownResponses);

    /// <summary>Local connections dropped for breaking the framing rules.</summary>
    public long ClientViolations => Interlocked.Read(ref _clientViolations);

    /// <summary>Local connections dropped because too many answers piled up unread.</summary>
    public long ClientsOverflowed => Interlocked.Read(ref _clientsOverflowed);

    /// <summary>Local connections closed for being idle longer than the idle timeout.</summary>
    public long IdleClosed => Interlocked.Read(ref _idleClosed);

    /// <summary>Server links established.</summary>
    public long ServerConnects => Interlocked.Read(ref _serverConnects);

    /// <summary>Server links lost, for any reason (closed by the server, reset, timed out, protocol violation).</summary>
    public long ServerLinkLosses => Interlocked.Read(ref _serverLinkLosses);

    /// <summary>Server links given up because the oldest request in flight waited longer than the operation timeout.</summary>
    public long ServerTimeouts => Interlocked.Read(ref _serverTimeouts);

    internal void ConnectionOpened()
    {
        Interlocked.Increment(ref _connectionsAccepted);
        Interlocked.Increment(ref _openConnections);
    }

    internal void ConnectionClosed() => Interlocked.Decrement(ref _openConnections);

    internal void ConnectionRefused() => Interlocked.Increment(ref _connectionsRefused);

    /// <summary>How many kinds <see cref="RequestsOf"/> tells apart: ADD, GET, REMOVE, HAVE and other.</summary>
    internal const int OperationKinds = 5;

    /// <summary>Complete requests of one operation read from local connections.</summary>
    /// <param name="operation">ADD, GET, REMOVE or HAVE; any other operation gives <see cref="OtherRequests"/>.</param>
    /// <returns>The count.</returns>
    public long RequestsOf(Operation operation) => Interlocked.Read(ref _requests[KindOf(operation)]);

    /// <summary>Complete requests of operations other than ADD, GET, REMOVE and HAVE (the protocol's extensions).</summary>
    public long OtherRequests => Interlocked.Read(ref _requests[OperationKinds - 1]);

    internal static int KindOf(Operation operation) => operation switch
    {
        Operation.Add => 0,
        Operation.Get => 1,
        Operation.Remove => 2,
        Operation.Have => 3,
        _ => 4,
    };

    internal void AddRequests(ReadOnlySpan<int> byKind)
    {
        for (int i = 0; i < byKind.Length; i++)
        {
            if (byKind[i] != 0)
            {
                Interlocked.Add(ref _requests[i], byKind[i]);
            }
        }
    }

    internal void AddForwarded(long count) => Interlocked.Add(ref _forwarded, count);

    internal void AddAnsweredDisconnected(long count) => Interlocked.Add(ref _answeredDisconnected, count);

    internal void AddResponsesDelivered(long count) => Interlocked.Add(ref _responsesDelivered, count);

    internal void AddResponsesDiscarded(long count) => Interlocked.Add(ref _responsesDiscarded, count);

    internal void AddUnknownResponses(long count) => Interlocked.Add(ref _unknownResponses, count);

    internal void ClientViolation() => Interlocked.Increment(ref _clientViolations);

    internal void ClientOverflowed() => Interlocked.Increment(ref _clientsOverflowed);

    internal void IdleClose() => Interlocked.Increment(ref _idleClosed);

    internal void ServerConnected() => Interlocked.Increment(ref _serverConnects);

    internal void ServerLinkLost() => Interlocked.Increment(ref _serverLinkLosses);

    internal void ServerTimeout() => Interlocked.Increment(ref _serverTimeouts);
}
