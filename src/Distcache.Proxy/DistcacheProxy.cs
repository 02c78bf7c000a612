using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Proxy;

/// <summary>
/// The distcache local proxy (<c>dc_client</c>): accepts any number of local connections, each sending one or many
/// requests, and forwards them all over one persistent connection to <c>dc_server</c>. Each forwarded request
/// gets a fresh server-side uid (1, 2, 3, ... as in 1.5.1), so that each answer goes back to the connection
/// that asked, carrying the uid that connection used, in the order of its requests.
/// </summary>
/// <remarks>
/// <para>
/// While there is no server link, every request is answered at once with the one-byte status
/// <c>DISCONNECTED</c> (2). 1.5.1 answered with an empty payload instead; its client library treats both as a
/// failed operation, and the status byte tells the application why. Requests in flight when the link is lost are
/// answered the same way at that moment. The link is re-established every <see cref="DistcacheProxyOptions.RetryInterval"/>,
/// and a server that stops answering without closing the connection is detected by
/// <see cref="DistcacheProxyOptions.OperationTimeout"/>.
/// </para>
/// <para>
/// Requests and answers are forwarded as the bytes that arrived, with only the uid (and a request's
/// <c>proto_level</c>) rewritten; payloads are never parsed. Framing is enforced on both sides with
/// <see cref="MessageDecoder"/>: a local client that breaks it is logged and dropped, a server that breaks it
/// loses the link.
/// </para>
/// </remarks>
public sealed class DistcacheProxy
{
    // How long a shutdown waits for the link's reader and writer to stop before resetting the link.
    private static readonly TimeSpan ShutdownLinkGrace = TimeSpan.FromSeconds(1);

    // How many batches a link writer sends in a row on the thread that started it (a local connection's) before
    // the thread pool takes over.
    private const int MaxInlineLinkWrites = 4;

    private readonly DistcacheProxyOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<long, (LocalConnection Connection, Task Served)> _clients = new();
    private readonly TaskCompletionSource<bool> _firstConnectAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Guards the link, its in-flight queue and staging buffer, and the uid counter. Every answer a local connection
    // gets is queued under it too; that is what keeps each connection's answers in the order of its requests.
    private readonly Lock _gate = new();
    private ServerLink? _link;
    private uint _nextUid = 1;
    private int _running;

    /// <summary>Creates a proxy; nothing happens until <see cref="RunAsync"/>.</summary>
    /// <param name="options">Where the server is, and the timing and flow-control settings.</param>
    /// <param name="logger">Where to log link changes and misbehaving peers; nowhere when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">The server address cannot be connected to.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of its documented range.</exception>
    public DistcacheProxy(DistcacheProxyOptions options, ILogger<DistcacheProxy>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The settings the proxy runs with.</summary>
    public DistcacheProxyOptions Options => _options;

    /// <summary>Counters for operators and tests.</summary>
    public ProxyStatistics Statistics { get; } = new();

    /// <summary>Whether requests are being forwarded to the server right now (false: they are answered <c>DISCONNECTED</c>).</summary>
    public bool IsServerConnected
    {
        get
        {
            lock (_gate)
            {
                return _link is not null;
            }
        }
    }

    /// <summary>
    /// Completes when <see cref="RunAsync"/> has made its first attempt to connect to the server: true if it
    /// connected, false if not (the proxy then keeps retrying). A start-up script can wait for it so that the
    /// proxy is forwarding by the time it reports ready, as 1.5.1 connected before it detached.
    /// </summary>
    public Task<bool> FirstConnectAttempt => _firstConnectAttempt.Task;

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
        Task link = RunServerLinkAsync(background.Token);
        Task housekeeping = RunHousekeepingAsync(background.Token);
        try
        {
            // As in 1.5.1, the server is contacted before the first local connection is accepted, so an application
            // that connects as soon as the socket exists has its requests forwarded, not answered DISCONNECTED.
            // Connections arriving meanwhile wait in the listen backlog, at most for one connection attempt.
            await ((Task)FirstConnectAttempt).WaitAsync(stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await AcceptLoopAsync(listener, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            await ShutDownAsync(background, link, housekeeping).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Forwards the requests one read of a local connection produced, or answers them <c>DISCONNECTED</c> when
    /// there is no link, in one locked step, then sends them: on the caller's thread when no write is under way
    /// on the link (see <see cref="WriteStaged"/>).
    /// </summary>
    internal void Forward(LocalConnection client, in ReadOnlySequence<byte> buffer, List<RequestLocation> requests)
    {
        ServerLink? link;
        int disconnected = 0;
        lock (_gate)
        {
            link = _link;
            client.AddInFlight(requests.Count);
            if (link is null)
            {
                foreach (RequestLocation request in requests)
                {
                    client.AnswerStatus(request.Uid, request.Operation, StatusCode.Disconnected);
                }

                disconnected = requests.Count;
            }
            else
            {
                long now = Stopwatch.GetTimestamp();
                foreach (RequestLocation request in requests)
                {
                    uint uid = _nextUid++;
                    if (link.InFlight.Count == 0)
                    {
                        link.FirstUid = uid;
                    }

                    link.InFlight.Enqueue(new InFlightRequest(client, request.Uid, request.Operation, now));
                    Relabel.Append(link.Staging, buffer.Slice(request.Start, request.Length), request.Frames, uid, resetLevel: true);
                }
            }
        }

        Statistics.AddRequests(requests.Count);
        if (link is null)
        {
            Statistics.AddAnsweredDisconnected(disconnected);
            client.WriteQueued();
        }
        else
        {
            Statistics.AddForwarded(requests.Count);
            WriteStaged(link);
        }
    }

    /// <summary>
    /// Sends what is staged for the link, unless a write is already under way (which then sends it too). The
    /// caller's thread makes the write itself, as far as the socket takes it without waiting, so that a request
    /// reaches the server without waking another thread; requests from many local connections staged during a
    /// write share the next one.
    /// </summary>
    private void WriteStaged(ServerLink link)
    {
        lock (_gate)
        {
            if (link.WriterBusy || link.Failed || link.Staging.Length == 0)
            {
                return;
            }

            link.WriterBusy = true;

            // On a native event loop (local connections on the native transport) the write waits until the loop
            // has dispatched its current batch of events: every local connection that became readable in the same
            // moment stages its requests first, and all go out in one write, without another thread.
            if (NativeTransport.TryDeferToEndOfBatch(link))
            {
                return;
            }

            if (link.Contended)
            {
                // Busy: others stage requests while a write is under way. A writer on the thread pool starts a
                // little later and so finds more of them to send in one write, which is worth more under load than
                // the wake-up it costs.
                ThreadPool.UnsafeQueueUserWorkItem(link, preferLocal: false);
                return;
            }
        }

        _ = DrainLinkAsync(link);
    }

    // What a link's reader or writer sees when the server goes away or the link is aborted under it: socket and
    // stream errors, and the pipes' complaints (cancelled, or used after completion) once the connection is torn down.
    private static bool IsNetworkFailure(Exception e) =>
        e is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException;

    private static string Describe(Exception e) => e is NetworkException ? e.Message : $"{e.GetType().Name}: {e.Message}";

    private async Task AcceptLoopAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        string name = listener.LocalAddress.ToString();
        long nextId = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await listener.AcceptAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is NetworkException or SocketException or IOException)
            {
                // Typically EMFILE under a connection flood: back off briefly instead of spinning.
                Log.AcceptFailed(_logger, name, e);
                await Task.Delay(50, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }

            long id = ++nextId;
            var client = new LocalConnection(this, connection, _options, _logger);
            Statistics.ConnectionOpened();
            Log.ClientOpened(_logger, client.Peer);

            // Listed before it is served: a connection served to its end without waiting must find its entry to
            // remove.
            _clients[id] = (client, Task.CompletedTask);
            Task served = ServeAsync(id, client);
            _clients.TryUpdate(id, (client, served), (client, Task.CompletedTask));
        }
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
            _clients.TryRemove(id, out _);
        }
    }

    private async Task ShutDownAsync(CancellationTokenSource background, Task link, Task housekeeping)
    {
        int inFlight;
        lock (_gate)
        {
            inFlight = _link?.InFlight.Count ?? 0;
        }

        Log.ShuttingDown(_logger, _clients.Count, inFlight);
        foreach ((LocalConnection client, _) in _clients.Values)
        {
            client.StopReading();
        }

        // Requests already forwarded deserve their real answers if the server gives them soon.
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < _options.ShutdownTimeout && _clients.Values.Any(c => c.Connection.InFlight > 0))
        {
            await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
        }

        // Losing the link answers whatever is still in flight with DISCONNECTED.
        await background.CancelAsync().ConfigureAwait(false);
        await link.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await housekeeping.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        // Connections now only write what is queued for them and close; a client that does not read is reset.
        Task all = Task.WhenAll(_clients.Values.Select(c => c.Served));
        if (await Task.WhenAny(all, Task.Delay(_options.ShutdownTimeout, CancellationToken.None)).ConfigureAwait(false) != all)
        {
            foreach ((LocalConnection client, _) in _clients.Values)
            {
                client.Abort();
            }
        }

        await all.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
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
                CheckOperationTimeout();
            }

            if (idleMs > 0)
            {
                long now = Environment.TickCount64;
                foreach ((LocalConnection client, _) in _clients.Values)
                {
                    client.CloseIfIdle(now, idleMs);
                }
            }
        }
    }

    private void CheckOperationTimeout()
    {
        ServerLink? expired = null;
        TimeSpan waited = default;
        lock (_gate)
        {
            if (_link is { } link && link.InFlight.TryPeek(out InFlightRequest oldest))
            {
                waited = Stopwatch.GetElapsedTime(oldest.SentAt);
                if (waited > _options.OperationTimeout)
                {
                    expired = link;
                }
            }
        }

        if (expired is not null)
        {
            Statistics.ServerTimeout();
            FailLink(expired, $"no answer for {(long)waited.TotalMilliseconds} ms (operation timeout {(long)_options.OperationTimeout.TotalMilliseconds} ms)");
        }
    }

    private async Task RunServerLinkAsync(CancellationToken cancellationToken)
    {
        Address server = _options.Server;
        long retryMs = (long)_options.RetryInterval.TotalMilliseconds;
        var connectionOptions = new ConnectionOptions
        {
            Logger = _logger,
            StreamWrapper = _options.Tls?.CreateStreamWrapper(server),
            NativeTransport = _options.NativeTransport && _options.Tls is null,
        };
        long nextAttempt = Stopwatch.GetTimestamp();
        bool reportedUnreachable = false;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                TimeSpan wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), nextAttempt);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    if (cancellationToken.IsCancellationRequested)
                    {
                        return;
                    }
                }

                long attemptedAt = Stopwatch.GetTimestamp();
                NetworkConnection connection;
                try
                {
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    attempt.CancelAfter(_options.ConnectTimeout);
                    connection = await NetworkConnection.ConnectAsync(server, connectionOptions, attempt.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    return;
                }
#pragma warning disable CA1031 // Whatever a connection attempt throws, the proxy must keep answering and retrying.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    string reason = e is OperationCanceledException
                        ? $"cannot connect to {server} within {(long)_options.ConnectTimeout.TotalMilliseconds} ms"
                        : Describe(e);
                    if (!reportedUnreachable)
                    {
                        Log.ServerUnreachable(_logger, reason, retryMs);
                        reportedUnreachable = true;
                    }
                    else
                    {
                        Log.ServerStillUnreachable(_logger, reason);
                    }

                    _firstConnectAttempt.TrySetResult(false);
                    nextAttempt = attemptedAt + (retryMs * Stopwatch.Frequency / 1000);
                    continue;
                }

                reportedUnreachable = false;
                var link = new ServerLink(connection, StartLinkWriter) { ConnectedAt = Stopwatch.GetTimestamp() };
                lock (_gate)
                {
                    _link = link;
                }

                Statistics.ServerConnected();
                Log.ServerConnected(_logger, server);
                _firstConnectAttempt.TrySetResult(true);
                await ServeLinkAsync(link, cancellationToken).ConfigureAwait(false);

                // A link that lived a full retry period was healthy: losing it is news, so reconnect at once (the
                // server may just have restarted). One that died young waits, so a server that accepts and then
                // drops the link at once is not hammered.
                long lived = Stopwatch.GetTimestamp() - link.ConnectedAt;
                long retryTicks = retryMs * Stopwatch.Frequency / 1000;
                nextAttempt = lived >= retryTicks ? Stopwatch.GetTimestamp() : Stopwatch.GetTimestamp() + retryTicks;
            }
        }
        finally
        {
            _firstConnectAttempt.TrySetResult(false);
        }
    }

    private async Task ServeLinkAsync(ServerLink link, CancellationToken cancellationToken)
    {
        Task reader = ReadLinkAsync(link);
        Task writer = link.WriterStopped.Task;
        await link.Closed.Task.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (!link.Closed.Task.IsCompleted)
        {
            FailLink(link, "the proxy is shutting down", expected: true);
        }

        // A shutdown closes the link in order (the server sees a clean end of stream) unless the server is not
        // even taking what was sent; a lost link was reset already.
        Task both = Task.WhenAll(reader, writer);
        if (await Task.WhenAny(both, Task.Delay(ShutdownLinkGrace, CancellationToken.None)).ConfigureAwait(false) != both)
        {
            link.Connection.Abort();
        }

        await both.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await link.Connection.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Gives up a link: from now on requests are answered <c>DISCONNECTED</c>, every request in flight on it is
    /// answered so at once (in order), requests staged for it are dropped, and its connection is reset. Only the
    /// first call for a link does anything.
    /// </summary>
    private void FailLink(ServerLink link, string reason, bool expected = false)
    {
        int answered;
        var answeredClients = new List<LocalConnection>();
        lock (_gate)
        {
            if (link.Failed)
            {
                return;
            }

            link.Failed = true;
            if (_link == link)
            {
                _link = null;
            }

            answered = link.InFlight.Count;
            while (link.InFlight.TryDequeue(out InFlightRequest request))
            {
                request.Client.AnswerStatus(request.ClientUid, request.Operation, StatusCode.Disconnected);
                AddOnce(answeredClients, request.Client);
            }

            link.Staging.Reset();
            if (!link.WriterBusy)
            {
                link.WriterStopped.TrySetResult();
            }
        }

        if (expected)
        {
            Log.ServerLinkClosed(_logger, _options.Server, reason, answered);
        }
        else
        {
            Log.ServerLinkLost(_logger, _options.Server, reason, answered);
            Statistics.ServerLinkLost();
        }

        Statistics.AddAnsweredDisconnected(answered);

        // Sent once logged and counted, so that whoever gets a DISCONNECTED answer also finds them.
        foreach (LocalConnection client in answeredClients)
        {
            client.WriteQueued();
        }

        if (expected)
        {
            StopReading(link.Connection);
        }
        else
        {
            link.Connection.Abort();
        }

        link.Closed.TrySetResult();
    }

    private static void StopReading(NetworkConnection connection)
    {
        try
        {
            connection.Input.CancelPendingRead();
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            // Already closed: the reader has stopped by itself.
        }
    }

    // Started from the thread pool or at the end of an event loop's batch (ServerLink.Execute).
    private void StartLinkWriter(ServerLink link) => _ = DrainLinkAsync(link);

    // The link's writer: started by WriteStaged with WriterBusy claimed, it sends everything staged, batch after
    // batch, and gives the claim back in the locked step that finds nothing staged (or the link failed), so that
    // requests staged at that moment are either in its next batch or find no writer and start one.
    private async Task DrainLinkAsync(ServerLink link)
    {
        PipeWriter output = link.Connection.Output;
        bool released = false;
        try
        {
            int batches = 0;
            while (true)
            {
                OutputBuffer batch;
                lock (_gate)
                {
                    if (link.Failed || link.Staging.Length == 0)
                    {
                        // More than one batch means requests were staged while this one was being written.
                        link.Contended = batches > 1;
                        ReleaseLinkWriter(link);
                        released = true;
                        return;
                    }

                    // Everything staged since the last write goes out in one write: requests from many local
                    // connections share one system call.
                    (link.Staging, link.Writing) = (link.Writing, link.Staging);
                    batch = link.Writing;
                }

                // A local connection's thread sends a few batches at most, then the thread pool takes over: its
                // own socket's other work must not wait behind everyone's requests.
                if (++batches % MaxInlineLinkWrites == 0)
                {
                    await Task.Yield();
                }

                FlushResult flushed;
                try
                {
                    flushed = await output.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                }
                finally
                {
                    batch.Reset();
                }

                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    FailLink(link, "the connection was closed while sending");
                }
            }
        }
        catch (Exception e) when (IsNetworkFailure(e))
        {
            FailLink(link, "sending failed: " + Describe(e));
        }
#pragma warning disable CA1031 // A bug must cost the link, which is re-established, never the proxy.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.ServerLinkError(_logger, _options.Server, e);
            FailLink(link, "internal error");
        }
        finally
        {
            if (!released)
            {
                lock (_gate)
                {
                    ReleaseLinkWriter(link);
                }
            }
        }
    }

    // Under the lock.
    private static void ReleaseLinkWriter(ServerLink link)
    {
        link.WriterBusy = false;
        if (link.Failed)
        {
            link.WriterStopped.TrySetResult();
        }
    }

    private async Task ReadLinkAsync(ServerLink link)
    {
        PipeReader input = link.Connection.Input;
        var decoder = new MessageDecoder(MessageDirection.Responses);
        var responses = new List<ResponseLocation>();
        var answered = new List<LocalConnection>();
        try
        {
            while (true)
            {
                ReadResult read = await input.ReadAsync().ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = read.Buffer;
                SequencePosition consumed = DecodeResponses(decoder, buffer, responses, out ProtocolViolation? violation);
                string? broken = responses.Count > 0 ? Deliver(link, buffer, responses, answered) : null;
                responses.Clear();

                // Out of the lock, and from this thread: each write is a send that does not wait (a connection whose
                // socket is full finishes its write later, on its own), so writing every answered connection here
                // costs no more than handing the writes to other threads, and saves a thread wake-up for each.
                // Handing all but the first to the thread pool, to spread the writes over the cores, cost 12-18%
                // more CPU per request at 50 connections with one request in flight each, and bought nothing at 16.
                foreach (LocalConnection connection in answered)
                {
                    connection.WriteQueued();
                }

                answered.Clear();
                long pending = buffer.Slice(consumed).Length;
                input.AdvanceTo(consumed, buffer.End);
                if (broken is not null)
                {
                    FailLink(link, "protocol violation: " + broken);
                    return;
                }

                if (violation is { } v)
                {
                    FailLink(link, "protocol violation: " + v.Describe());
                    return;
                }

                if (read.IsCompleted)
                {
                    FailLink(link, pending > 0 ? $"the server closed the connection in the middle of a response ({pending} bytes pending)" : "the server closed the connection");
                    return;
                }

                if (read.IsCanceled || link.Failed)
                {
                    FailLink(link, "the connection was closed");
                    return;
                }
            }
        }
        catch (Exception e) when (IsNetworkFailure(e))
        {
            FailLink(link, "receiving failed: " + Describe(e));
        }
#pragma warning disable CA1031 // A bug must cost the link, which is re-established, never the proxy.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.ServerLinkError(_logger, _options.Server, e);
            FailLink(link, "internal error");
        }
    }

    // SequenceReader cannot live across the read loop's awaits, so decoding is its own synchronous step.
    // Internal so the fuzz targets drive this very loop.
    internal static SequencePosition DecodeResponses(MessageDecoder decoder, in ReadOnlySequence<byte> buffer, List<ResponseLocation> responses, out ProtocolViolation? violation)
    {
        var reader = new SequenceReader<byte>(buffer);
        violation = null;
        while (true)
        {
            long start = reader.Consumed;
            DecodeStatus status = decoder.TryDecode(ref reader, out Message response, out ProtocolViolation broken);
            if (status == DecodeStatus.NeedMoreData)
            {
                break;
            }

            if (status == DecodeStatus.Violation)
            {
                violation = broken;
                break;
            }

            responses.Add(new ResponseLocation(start, reader.Consumed - start, response.RequestUid, response.Operation, response.FrameCount));
        }

        return reader.Position;
    }

    /// <summary>
    /// Hands each response to the local connection whose request it answers, under the lock once for the whole
    /// batch, and lists in <paramref name="answered"/> the connections that got answers (for the caller to write
    /// them out of the lock). Returns why the link must be given up, or null.
    /// </summary>
    private string? Deliver(ServerLink link, in ReadOnlySequence<byte> buffer, List<ResponseLocation> responses, List<LocalConnection> answered)
    {
        int delivered = 0;
        int discarded = 0;
        int unknown = 0;
        ResponseLocation firstUnknown = default;
        string? broken = null;
        lock (_gate)
        {
            if (link.Failed)
            {
                // Its requests were already answered DISCONNECTED; late answers must not be sent twice.
                return null;
            }

            foreach (ResponseLocation response in responses)
            {
                // Uids on a link are consecutive from FirstUid, so the offset says at once whether the uid is in
                // flight: past the end means never sent, a wrapped (huge) offset means already answered.
                uint offset = unchecked(response.Uid - link.FirstUid);
                if (offset >= (uint)link.InFlight.Count)
                {
                    if (unknown++ == 0)
                    {
                        firstUnknown = response;
                    }

                    continue;
                }

                InFlightRequest oldest = link.InFlight.Peek();
                if (offset != 0)
                {
                    // The server answers in order (PROTOCOL.md section 3); skipping a request would leave its
                    // client waiting for an answer that never comes.
                    broken = $"response to uid {response.Uid} before the response to uid {link.FirstUid}";
                    break;
                }

                if (oldest.Operation != response.Operation)
                {
                    broken = $"response to uid {response.Uid} is {response.Operation.ToWireName()}, the request was {oldest.Operation.ToWireName()}";
                    break;
                }

                link.InFlight.Dequeue();
                link.FirstUid++;
                if (oldest.Client.Answer(buffer.Slice(response.Start, response.Length), response.Frames, oldest.ClientUid))
                {
                    delivered++;
                    AddOnce(answered, oldest.Client);
                }
                else
                {
                    discarded++;
                }
            }
        }

        // Logged before counted, so whoever sees the count also finds the log line.
        if (unknown > 0)
        {
            Log.UnknownResponses(_logger, _options.Server, unknown, firstUnknown.Uid, firstUnknown.Operation.ToWireName());
            Statistics.AddUnknownResponses(unknown);
        }

        Statistics.AddResponsesDelivered(delivered);
        Statistics.AddResponsesDiscarded(discarded);

        return broken;
    }

    // A connection's answers usually come together (its requests were forwarded together), so comparing with the
    // last one listed removes nearly all repeats; one that slips through costs a WriteQueued that finds nothing.
    private static void AddOnce(List<LocalConnection> clients, LocalConnection client)
    {
        if (clients.Count == 0 || !ReferenceEquals(clients[^1], client))
        {
            clients.Add(client);
        }
    }

    /// <summary>One complete response found in the server link's input.</summary>
    internal readonly record struct ResponseLocation(long Start, long Length, uint Uid, Operation Operation, int Frames);
}
