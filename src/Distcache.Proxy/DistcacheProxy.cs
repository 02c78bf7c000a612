using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Proxy;

/// <summary>
/// The distcache local proxy (<c>dc_client</c>): accepts any number of local connections, each sending one or many
/// requests, and forwards them over one persistent link per server. With several servers, each request goes to the
/// server its session id falls to on a consistent hash ring, so the sessions are spread over them. Each forwarded
/// request gets a fresh uid on its link (1, 2, 3, ... as in 1.5.1), so that each answer goes back to the
/// connection that asked, carrying the uid that connection used, in the order of its requests.
/// </summary>
/// <remarks>
/// <para>
/// While a request's server is unreachable, the request goes to the next reachable server on the ring (an ADD is
/// then stored there, and a GET of a session the lost server held misses); while no server is reachable, every
/// request is answered at once with the one-byte status <c>DISCONNECTED</c> (2). 1.5.1, with its one server,
/// answered with an empty payload instead; its client library treats both as a failed operation, and the status
/// byte tells the application why. Requests in flight when a link is lost are answered the same way at that
/// moment. A link is re-established every <see cref="DistcacheProxyOptions.RetryInterval"/>, and a server that
/// stops answering without closing the connection is detected by <see cref="DistcacheProxyOptions.OperationTimeout"/>.
/// </para>
/// <para>
/// Requests and answers are forwarded as the bytes that arrived, with only the uid (and a request's
/// <c>proto_level</c>) rewritten; payloads are read only to find the session id a request routes by. Framing is
/// enforced on both sides with <see cref="MessageDecoder"/>: a local client that breaks it is logged and dropped,
/// a server that breaks it loses its link.
/// </para>
/// </remarks>
public sealed class DistcacheProxy
{
    private readonly DistcacheProxyOptions _options;
    private readonly ILogger _logger;
    private readonly ServerLink[] _links;
    private readonly ConsistentHashRing? _ring;
    private readonly ConcurrentDictionary<long, LocalConnection> _clients = new();
    private int _running;
    private long _nextClientId;

    // Local connections counted against MaxConnections; refusals not yet logged, and when the last line was written.
    private long _capped;
    private long _refusedUnlogged;
    private long _refusedLoggedAt = long.MinValue / 2;

    /// <summary>Creates a proxy; nothing happens until <see cref="RunAsync"/>.</summary>
    /// <param name="options">Where the server is, and the timing and flow-control settings.</param>
    /// <param name="logger">Where to log link changes and misbehaving peers; nowhere when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">No server, a server address that cannot be connected to, or the same one twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of its documented range.</exception>
    public DistcacheProxy(DistcacheProxyOptions options, ILogger<DistcacheProxy>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _links = [.. options.Servers.Select(server => new ServerLink(this, server, _logger))];

        // The ring is built from the addresses as written, so that every dc_client listing the same servers (in
        // any order) sends each session to the same one.
        _ring = _links.Length > 1 ? new ConsistentHashRing(options.Servers.Select(server => server.ToString())) : null;
        Task<bool>[] attempts = [.. _links.Select(link => link.FirstConnectAttempt)];
        FirstConnectAttempt = Task.WhenAll(attempts).ContinueWith(
            static (_, state) => ((Task<bool>[])state!).Any(attempt => attempt.Result), attempts, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>The settings the proxy runs with.</summary>
    public DistcacheProxyOptions Options => _options;

    /// <summary>Counters for operators and tests.</summary>
    public ProxyStatistics Statistics { get; } = new();

    /// <summary>
    /// Whether requests are being forwarded right now: with one server, whether it is linked (false: requests are
    /// answered <c>DISCONNECTED</c>); with several, whether any is.
    /// </summary>
    public bool IsServerConnected => _links.Any(link => link.IsConnected);

    /// <summary>Each server's link as it is now, in the order of <see cref="DistcacheProxyOptions.Servers"/>.</summary>
    /// <returns>One entry per server.</returns>
    public IReadOnlyList<ProxyLinkState> GetLinkStates() =>
        [.. _links.Select(link => new ProxyLinkState(link.Server, link.IsConnected, link.Connects, link.Losses, link.InFlightCount))];

    /// <summary>How many of the servers are linked right now.</summary>
    public int ConnectedServers => _links.Count(link => link.IsConnected);

    /// <summary>
    /// Completes when <see cref="RunAsync"/> has made its first attempt to connect to every server: true if it
    /// connected to at least one, false if to none (the proxy then keeps retrying). A start-up script can wait for
    /// it so that the proxy is forwarding by the time it reports ready, as 1.5.1 connected before it detached.
    /// </summary>
    public Task<bool> FirstConnectAttempt { get; }

    /// <summary>
    /// Runs the proxy: keeps the server link up (connecting, detecting its loss, reconnecting), accepts local
    /// connections from <paramref name="listener"/> (once the first connection attempt to the server has succeeded
    /// or failed) and serves them, until <paramref name="stoppingToken"/> is
    /// cancelled. Then shuts down cleanly: stops accepting and reading requests, gives requests already forwarded
    /// up to <see cref="DistcacheProxyOptions.ShutdownTimeout"/> to be answered, answers the rest with
    /// <c>DISCONNECTED</c>, writes every queued answer, and closes every connection. The caller disposes the
    /// listener afterwards, which removes a unix socket file.
    /// </summary>
    /// <param name="listener">Where local connections arrive.</param>
    /// <param name="stoppingToken">Shutdown.</param>
    /// <returns>A task that completes when the shutdown is finished. It does not fail for anything a peer does.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="listener"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The proxy is already running or has run; a proxy runs once.</exception>
    public async Task RunAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        if (Interlocked.Exchange(ref _running, 1) != 0)
        {
            throw new InvalidOperationException("A DistcacheProxy runs once; create a new one to run again.");
        }

        using var background = new CancellationTokenSource();
        Task links = Task.WhenAll(_links.Select(l => l.RunAsync(background.Token)));
        Task housekeeping = RunHousekeepingAsync(background.Token);
        try
        {
            // As in 1.5.1, the servers are contacted before the first local connection is accepted, so an application
            // that connects as soon as the socket exists has its requests forwarded, not answered DISCONNECTED.
            // Connections arriving meanwhile wait in the listen backlog, at most for one connection attempt.
            await ((Task)FirstConnectAttempt).WaitAsync(stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await AcceptLoopAsync(listener, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            await ShutDownAsync(background, links, housekeeping).ConfigureAwait(false);
        }
    }

    /// <summary>The histogram of the time from forwarding a request to handing its answer over, when a
    /// <see cref="ProxyMetrics"/> exists for this proxy.</summary>
    internal System.Diagnostics.Metrics.Histogram<double>? RequestDuration { get; set; }

    /// <summary>How many servers requests are spread over; the local connections route by it.</summary>
    internal int ServerCount => _links.Length;

    /// <summary>Where a session id falls on the ring, when there are several servers (0 with one).</summary>
    internal int Locate(ReadOnlySpan<byte> sessionId) => _ring?.Locate(sessionId) ?? 0;

    /// <summary>
    /// Forwards the requests one read of a local connection produced, each to its server's link in one locked step
    /// per link, and answers <c>DISCONNECTED</c> those that no server can take. <paramref name="targets"/> is the
    /// connection's scratch space, one entry per request.
    /// </summary>
    internal void Forward(LocalConnection client, in ReadOnlySequence<byte> buffer, List<RequestLocation> requests, int[] targets)
    {
        client.AddInFlight(requests.Count);
        Span<int> byOperation = stackalloc int[ProxyStatistics.OperationKinds];
        foreach (RequestLocation request in requests)
        {
            byOperation[ProxyStatistics.KindOf(request.Operation)]++;
        }

        Statistics.AddRequests(byOperation);
        int forwarded = 0;
        int disconnected = 0;
        if (_ring is null)
        {
            forwarded = Math.Max(0, _links[0].Forward(client, buffer, requests, [], 0));
            if (forwarded == 0)
            {
                disconnected = AnswerDisconnected(client, requests, [], 0);
            }
        }
        else
        {
            forwarded = ForwardSpread(client, buffer, requests, targets.AsSpan(0, requests.Count), out disconnected);
        }

        Statistics.AddForwarded(forwarded);
        if (disconnected > 0)
        {
            Statistics.AddAnsweredDisconnected(disconnected);
            client.WriteQueued();
        }
    }

    // Several servers: each request goes to the first linked server on the ring from its session id. A link lost
    // between the choice and the forwarding answers its share DISCONNECTED, as if the loss had come a moment later.
    private int ForwardSpread(LocalConnection client, in ReadOnlySequence<byte> buffer, List<RequestLocation> requests, Span<int> targets, out int disconnected)
    {
        Span<bool> linked = stackalloc bool[_links.Length];
        for (int i = 0; i < _links.Length; i++)
        {
            linked[i] = _links[i].IsConnected;
        }

        for (int i = 0; i < requests.Count; i++)
        {
            targets[i] = _ring!.FirstUsable(requests[i].RingPosition, linked);
        }

        int forwarded = 0;
        disconnected = AnswerDisconnected(client, requests, targets, -1);
        for (int link = 0; link < _links.Length; link++)
        {
            if (linked[link] && targets.Contains(link))
            {
                int sent = _links[link].Forward(client, buffer, requests, targets, link);
                if (sent < 0)
                {
                    disconnected += AnswerDisconnected(client, requests, targets, link);
                }
                else
                {
                    forwarded += sent;
                }
            }
        }

        return forwarded;
    }

    // Answers DISCONNECTED the requests whose target is 'target' (all of them when 'targets' is empty).
    private static int AnswerDisconnected(LocalConnection client, List<RequestLocation> requests, ReadOnlySpan<int> targets, int target)
    {
        int answered = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            if (targets.IsEmpty || targets[i] == target)
            {
                RequestLocation request = requests[i];
                client.AnswerStatus(request.Sequence, request.Uid, request.Operation, StatusCode.Disconnected);
                answered++;
            }
        }

        return answered;
    }

    private Task AcceptLoopAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        string name = listener.LocalAddress.ToString();
        return listener.AcceptLoopAsync(
            connection =>
            {
                // Counted first, then checked: several loops may accept at once.
                if (_options.MaxConnections > 0 && Interlocked.Increment(ref _capped) > _options.MaxConnections)
                {
                    Interlocked.Decrement(ref _capped);
                    Refuse(connection);
                    return;
                }

                long id = Interlocked.Increment(ref _nextClientId);
                var client = new LocalConnection(this, connection, _options, _logger);
                Statistics.ConnectionOpened();
                Log.ClientOpened(_logger, client.Peer);

                // Listed before it is served: a connection served to its end without waiting must find its entry to
                // remove.
                _clients[id] = client;
                _ = ServeAsync(id, client);
            },
            e => Log.AcceptFailed(_logger, name, e),
            stoppingToken);
    }

    private async Task ServeAsync(long id, LocalConnection client)
    {
        // Served on the accept loop's thread until its first wait. A short-lived client's request is usually there
        // already: read, forwarded and sent to the server here, it wakes no other thread on the way. The reader
        // waits at the latest when the connection has its limit of requests in flight, and the accept loop then
        // goes back to accepting.
        try
        {
            await client.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            Statistics.ConnectionClosed();
            if (_options.MaxConnections > 0)
            {
                Interlocked.Decrement(ref _capped);
            }

            _clients.TryRemove(id, out _);
        }
    }

    // Closes a connection over the cap at once (the application reads end of stream), and logs the refusals at most
    // once a second, with their count.
    private void Refuse(NetworkConnection connection)
    {
        Statistics.ConnectionRefused();
        _ = connection.DisposeAsync().AsTask();
        Interlocked.Increment(ref _refusedUnlogged);
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref _refusedLoggedAt);
        if (now - last >= 1000 && Interlocked.CompareExchange(ref _refusedLoggedAt, now, last) == last)
        {
            Log.ConnectionsRefused(_logger, Interlocked.Exchange(ref _refusedUnlogged, 0), _options.MaxConnections);
        }
    }

    private async Task ShutDownAsync(CancellationTokenSource background, Task links, Task housekeeping)
    {
        int inFlight = _links.Sum(link => link.InFlightCount);

        Log.ShuttingDown(_logger, _clients.Count, inFlight);
        foreach (LocalConnection client in _clients.Values)
        {
            client.StopReading();
        }

        // Requests already forwarded deserve their real answers if the server gives them soon.
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < _options.ShutdownTimeout && _clients.Values.Any(c => c.InFlight > 0))
        {
            await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
        }

        // Losing the links answers whatever is still in flight with DISCONNECTED.
        await background.CancelAsync().ConfigureAwait(false);
        await links.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await housekeeping.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        // Connections now only write what is queued for them and close; a client that does not read is reset.
        // Polled, as the in-flight wait above is: a connection costs no task bookkeeping for a shutdown that seldom comes.
        clock.Restart();
        while (!_clients.IsEmpty && clock.Elapsed < _options.ShutdownTimeout)
        {
            await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
        }

        foreach (LocalConnection client in _clients.Values)
        {
            client.Abort();
        }

        while (!_clients.IsEmpty)
        {
            await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private async Task RunHousekeepingAsync(CancellationToken cancellationToken)
    {
        long timeoutMs = (long)_options.OperationTimeout.TotalMilliseconds;
        long idleMs = (long)_options.IdleTimeout.TotalMilliseconds;
        if (timeoutMs == 0 && idleMs == 0)
        {
            return;
        }

        // Checking a few times per period bounds the overshoot to a fraction of the period at a negligible cost
        // (one look at the oldest request, one pass over the connections).
        long period = long.MaxValue;
        if (timeoutMs > 0)
        {
            period = Math.Min(period, Math.Clamp(timeoutMs / 8, 5, 500));
        }

        if (idleMs > 0)
        {
            period = Math.Min(period, Math.Clamp(idleMs / 4, 5, 1000));
        }

        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(period));
        while (true)
        {
            try
            {
                await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (timeoutMs > 0)
            {
                foreach (ServerLink link in _links)
                {
                    link.CheckOperationTimeout();
                }
            }

            if (idleMs > 0)
            {
                long now = Environment.TickCount64;
                foreach (LocalConnection client in _clients.Values)
                {
                    client.CloseIfIdle(now, idleMs);
                }
            }
        }
    }
}
