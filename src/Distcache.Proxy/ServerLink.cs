using System.Diagnostics.Metrics;
using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;

namespace Distcache.Proxy;

/// <summary>A request forwarded on a server link and not yet answered.</summary>
/// <param name="Client">The local connection that sent it.</param>
/// <param name="ClientUid">The uid the local connection used, which its answer must carry.</param>
/// <param name="Operation">The operation, which the server's answer must carry too.</param>
/// <param name="Sequence">Its place among the local connection's requests, which orders the connection's answers.</param>
/// <param name="SentAt">When it was queued for the server (<see cref="Stopwatch"/> ticks).</param>
internal readonly record struct InFlightRequest(LocalConnection Client, uint ClientUid, Operation Operation, long Sequence, long SentAt);

/// <summary>One complete response found in a server link's input.</summary>
internal readonly record struct ResponseLocation(long Start, long Length, uint Uid, Operation Operation, int Frames);

/// <summary>
/// The proxy's link to one <c>dc_server</c>, for the proxy's whole life: connects, forwards the requests routed to
/// it, hands each answer to the local connection that asked, notices the server going away (closed, broken or
/// silent for longer than the operation timeout), answers what was in flight <c>DISCONNECTED</c>, and reconnects
/// every retry interval. The proxy has one per <c>-server</c>; each behaves the same whether it is the only one
/// or one of several.
/// </summary>
/// <remarks>
/// <para>
/// One lock guards the link's connection, its requests in flight, what is staged for the server and the uid
/// counter: a request gets its uid, its place in flight and its place in the staged bytes in one step, so the
/// order on the wire is the order in flight, and an answer is matched by arithmetic on its uid.
/// </para>
/// <para>
/// Requests are forwarded as the bytes that arrived, with only the uid (and <c>proto_level</c>) rewritten;
/// answers likewise. A server that breaks the framing or answers out of order loses the link.
/// </para>
/// </remarks>
internal sealed class ServerLink
{
    // How long a shutdown waits for the connection's reader and writer to stop before resetting it.
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(1);

    private readonly DistcacheProxy _proxy;
    private readonly DistcacheProxyOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly TaskCompletionSource<bool> _firstConnectAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private LinkConnection? _current;
    private uint _nextUid = 1;
    private long _connects;
    private long _losses;

    public ServerLink(DistcacheProxy proxy, Address server, ILogger logger)
    {
        _proxy = proxy;
        _options = proxy.Options;
        _logger = logger;
        Server = server;
    }

    /// <summary>The server this link connects to.</summary>
    public Address Server { get; }

    /// <summary>Whether requests routed here are forwarded now. Read without the lock: a router's hint, re-checked when forwarding.</summary>
    public bool IsConnected => Volatile.Read(ref _current) is not null;

    /// <summary>Connections to this server established.</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>Connections to this server lost without being asked to close.</summary>
    public long Losses => Interlocked.Read(ref _losses);

    /// <summary>Completes after the first connection attempt: true if it connected.</summary>
    public Task<bool> FirstConnectAttempt => _firstConnectAttempt.Task;

    /// <summary>How many requests are waiting for the server's answers now.</summary>
    public int InFlightCount
    {
        get
        {
            lock (_gate)
            {
                return _current?.InFlight.Count ?? 0;
            }
        }
    }

    /// <summary>
    /// Forwards the requests of <paramref name="requests"/> routed here (those whose entry in
    /// <paramref name="targets"/> is <paramref name="index"/>, or all of them when <paramref name="targets"/> is
    /// empty), in one locked step, then starts the writer. Returns how many were forwarded, or -1 when there is no
    /// connection now, in which case nothing was done and the caller answers them.
    /// </summary>
    public int Forward(LocalConnection client, in ReadOnlySequence<byte> buffer, List<RequestLocation> requests, ReadOnlySpan<int> targets, int index)
    {
        LinkConnection? connection;
        int forwarded = 0;
        lock (_gate)
        {
            connection = _current;
            if (connection is null)
            {
                return -1;
            }

            long now = Stopwatch.GetTimestamp();
            PooledBuffer staging = connection.Writer.Staging;
            for (int i = 0; i < requests.Count; i++)
            {
                if (!targets.IsEmpty && targets[i] != index)
                {
                    continue;
                }

                RequestLocation request = requests[i];
                uint uid = _nextUid++;
                if (connection.InFlight.Count == 0)
                {
                    connection.FirstUid = uid;
                }

                connection.InFlight.Enqueue(new InFlightRequest(client, request.Uid, request.Operation, request.Sequence, now));
                Relabel.Append(staging, buffer.Slice(request.Start, request.Length), request.Frames, uid, resetLevel: true);
                forwarded++;
            }
        }

        connection.Writer.Flush(stagedFrom: client.Network);
        return forwarded;
    }

    /// <summary>
    /// Keeps the link up until <paramref name="cancellationToken"/> fires: connects, serves the connection until it
    /// is lost, and reconnects, every retry interval while the server cannot be reached.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        long retryMs = (long)_options.RetryInterval.TotalMilliseconds;
        var connectionOptions = new ConnectionOptions
        {
            Logger = _logger,
            StreamWrapper = _options.Tls?.CreateStreamWrapper(Server),
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
                NetworkConnection network;
                try
                {
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    attempt.CancelAfter(_options.ConnectTimeout);
                    network = await NetworkConnection.ConnectAsync(Server, connectionOptions, attempt.Token).ConfigureAwait(false);
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
                        ? $"cannot connect to {Server} within {(long)_options.ConnectTimeout.TotalMilliseconds} ms"
                        : Describe(e);
                    if (!reportedUnreachable)
                    {
                        Log.ServerUnreachable(_logger, Server, reason, retryMs);
                        reportedUnreachable = true;
                    }
                    else
                    {
                        Log.ServerStillUnreachable(_logger, Server, reason);
                    }

                    _firstConnectAttempt.TrySetResult(false);
                    nextAttempt = attemptedAt + (retryMs * Stopwatch.Frequency / 1000);
                    continue;
                }

                reportedUnreachable = false;
                var connection = new LinkConnection(this, network);
                lock (_gate)
                {
                    _current = connection;
                }

                Interlocked.Increment(ref _connects);
                _proxy.Statistics.ServerConnected();
                Log.ServerConnected(_logger, Server);
                _firstConnectAttempt.TrySetResult(true);
                await ServeAsync(connection, cancellationToken).ConfigureAwait(false);

                // A connection that lived a full retry period was healthy: losing it is news, so reconnect at once
                // (the server may just have restarted). One that died young waits, so a server that accepts and
                // then drops the link at once is not hammered.
                long lived = Stopwatch.GetTimestamp() - connection.ConnectedAt;
                long retryTicks = retryMs * Stopwatch.Frequency / 1000;
                nextAttempt = lived >= retryTicks ? Stopwatch.GetTimestamp() : Stopwatch.GetTimestamp() + retryTicks;
            }
        }
        finally
        {
            _firstConnectAttempt.TrySetResult(false);
        }
    }

    /// <summary>
    /// Gives up the connection if its oldest request has waited longer than the operation timeout: the server is
    /// taken to be gone without having closed it.
    /// </summary>
    public void CheckOperationTimeout()
    {
        LinkConnection? expired = null;
        TimeSpan waited = default;
        lock (_gate)
        {
            if (_current is { } connection && connection.InFlight.TryPeek(out InFlightRequest oldest))
            {
                waited = Stopwatch.GetElapsedTime(oldest.SentAt);
                if (waited > _options.OperationTimeout)
                {
                    expired = connection;
                }
            }
        }

        if (expired is not null)
        {
            _proxy.Statistics.ServerTimeout();
            Fail(expired, $"no answer for {(long)waited.TotalMilliseconds} ms (operation timeout {(long)_options.OperationTimeout.TotalMilliseconds} ms)");
        }
    }

    // SequenceReader cannot live across the read loop's awaits, so decoding is its own synchronous step.
    // Internal so the fuzz targets drive this very loop.
    internal static SequencePosition DecodeResponses(MessageDecoder decoder, in ReadOnlySequence<byte> buffer, List<ResponseLocation> responses, out ProtocolViolation? violation)
    {
        var sink = new ResponseSink(responses);
        return decoder.DecodeAll(buffer, ref sink, out violation);
    }

    private static string Describe(Exception e) => e is NetworkException ? e.Message : $"{e.GetType().Name}: {e.Message}";

    // A connection's answers usually come together (its requests were forwarded together), so comparing with the
    // last one listed removes nearly all repeats; one that slips through costs a WriteQueued that finds nothing.
    private static void AddOnce(List<LocalConnection> clients, LocalConnection client)
    {
        if (clients.Count == 0 || !ReferenceEquals(clients[^1], client))
        {
            clients.Add(client);
        }
    }

    private async Task ServeAsync(LinkConnection connection, CancellationToken cancellationToken)
    {
        Task reader = ReadAsync(connection);
        await connection.Closed.Task.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (!connection.Closed.Task.IsCompleted)
        {
            Fail(connection, "the proxy is shutting down", expected: true);
        }

        // A shutdown closes the connection in order (the server sees a clean end of stream) unless the server is
        // not even taking what was sent; a lost connection was reset already.
        Task both = Task.WhenAll(reader, connection.Writer.Stopped);
        if (await Task.WhenAny(both, Task.Delay(ShutdownGrace, CancellationToken.None)).ConfigureAwait(false) != both)
        {
            connection.Network.Abort();
        }

        await both.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await connection.Network.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Gives up a connection: from now on requests routed here are answered <c>DISCONNECTED</c> (or go to another
    /// server), every request in flight on it is answered so at once, what is staged for it is dropped, and it is
    /// reset. Only the first call for a connection does anything.
    /// </summary>
    private void Fail(LinkConnection connection, string reason, bool expected = false)
    {
        int answered;
        var answeredClients = new List<LocalConnection>();
        lock (_gate)
        {
            if (connection.Failed)
            {
                return;
            }

            connection.Failed = true;

            // Counted before the link reads as down, so that whoever sees it down also sees the loss counted.
            if (!expected)
            {
                Interlocked.Increment(ref _losses);
                _proxy.Statistics.ServerLinkLost();
            }

            if (_current == connection)
            {
                _current = null;
            }

            answered = connection.InFlight.Count;
            while (connection.InFlight.TryDequeue(out InFlightRequest request))
            {
                request.Client.AnswerStatus(request.Sequence, request.ClientUid, request.Operation, StatusCode.Disconnected);
                AddOnce(answeredClients, request.Client);
            }

            connection.Writer.Close();
        }

        if (expected)
        {
            Log.ServerLinkClosed(_logger, Server, reason, answered);
        }
        else
        {
            Log.ServerLinkLost(_logger, Server, reason, answered);
        }

        _proxy.Statistics.AddAnsweredDisconnected(answered);

        // Sent once logged and counted, so that whoever gets a DISCONNECTED answer also finds them.
        foreach (LocalConnection client in answeredClients)
        {
            client.WriteQueued();
        }

        if (expected)
        {
            StopReading(connection.Network);
        }
        else
        {
            connection.Network.Abort();
        }

        connection.Closed.TrySetResult();
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

    private async Task ReadAsync(LinkConnection connection)
    {
        PipeReader input = connection.Network.Input;
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
                string? broken = responses.Count > 0 ? Deliver(connection, buffer, responses, answered) : null;
                responses.Clear();

                // Out of the lock, and from this thread: each write is a send that does not wait (a connection whose
                // socket is full finishes its write later, on its own), so writing every answered connection here
                // costs no more than handing the writes to other threads, and saves a thread wake-up for each.
                // Handing all but the first to the thread pool, to spread the writes over the cores, cost 12-18%
                // more CPU per request at 50 connections with one request in flight each, and bought nothing at 16.
                foreach (LocalConnection client in answered)
                {
                    client.WriteQueued();
                }

                answered.Clear();
                long pending = buffer.Slice(consumed).Length;
                input.AdvanceTo(consumed, buffer.End);
                if (broken is not null)
                {
                    Fail(connection, "protocol violation: " + broken);
                    return;
                }

                if (violation is { } v)
                {
                    Fail(connection, "protocol violation: " + v.Describe());
                    return;
                }

                if (read.IsCompleted)
                {
                    Fail(connection, pending > 0 ? $"the server closed the connection in the middle of a response ({pending} bytes pending)" : "the server closed the connection");
                    return;
                }

                if (read.IsCanceled || connection.Failed)
                {
                    Fail(connection, "the connection was closed");
                    return;
                }
            }
        }
        catch (Exception e) when (NetworkErrors.IsConnectionFailure(e))
        {
            Fail(connection, "receiving failed: " + Describe(e));
        }
#pragma warning disable CA1031 // A bug must cost the connection, which is re-established, never the proxy.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.ServerLinkError(_logger, Server, e);
            Fail(connection, "internal error");
        }
    }

    /// <summary>
    /// Hands each response to the local connection whose request it answers, under the lock once for the whole
    /// batch, and lists in <paramref name="answered"/> the connections that got answers (for the caller to write
    /// them out of the lock). Returns why the connection must be given up, or null.
    /// </summary>
    private string? Deliver(LinkConnection connection, in ReadOnlySequence<byte> buffer, List<ResponseLocation> responses, List<LocalConnection> answered)
    {
        int delivered = 0;
        int discarded = 0;
        int unknown = 0;
        ResponseLocation firstUnknown = default;
        string? broken = null;

        // One clock read for the batch, and none while nothing listens to the histogram.
        Histogram<double>? duration = _proxy.RequestDuration;
        long now = duration is { Enabled: true } ? Stopwatch.GetTimestamp() : 0;
        lock (_gate)
        {
            if (connection.Failed)
            {
                // Its requests were already answered DISCONNECTED; late answers must not be sent twice.
                return null;
            }

            foreach (ResponseLocation response in responses)
            {
                // Uids on a connection are consecutive from FirstUid, so the offset says at once whether the uid is
                // in flight: past the end means never sent, a wrapped (huge) offset means already answered.
                uint offset = unchecked(response.Uid - connection.FirstUid);
                if (offset >= (uint)connection.InFlight.Count)
                {
                    if (unknown++ == 0)
                    {
                        firstUnknown = response;
                    }

                    continue;
                }

                InFlightRequest oldest = connection.InFlight.Peek();
                if (offset != 0)
                {
                    // The server answers in order (PROTOCOL.md section 3); skipping a request would leave its
                    // client waiting for an answer that never comes.
                    broken = $"response to uid {response.Uid} before the response to uid {connection.FirstUid}";
                    break;
                }

                if (oldest.Operation != response.Operation)
                {
                    broken = $"response to uid {response.Uid} is {response.Operation.ToWireName()}, the request was {oldest.Operation.ToWireName()}";
                    break;
                }

                connection.InFlight.Dequeue();
                connection.FirstUid++;
                if (oldest.Client.Answer(oldest.Sequence, buffer.Slice(response.Start, response.Length), response.Frames, oldest.ClientUid))
                {
                    delivered++;
                    AddOnce(answered, oldest.Client);
                    if (now != 0)
                    {
                        duration!.Record(Stopwatch.GetElapsedTime(oldest.SentAt, now).TotalSeconds, new KeyValuePair<string, object?>(ProxyMetrics.OperationAttribute, oldest.Operation.ToMetricName()));
                    }
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
            Log.UnknownResponses(_logger, Server, unknown, firstUnknown.Uid, firstUnknown.Operation.ToWireName());
            _proxy.Statistics.AddUnknownResponses(unknown);
        }

        _proxy.Statistics.AddResponsesDelivered(delivered);
        _proxy.Statistics.AddResponsesDiscarded(discarded);
        return broken;
    }

    /// <summary>Lists where each response is, to be relabelled and handed on as it arrived.</summary>
    private readonly struct ResponseSink(List<ResponseLocation> responses) : IMessageSink
    {
        public bool WantsMore => true;

        public ProtocolViolation? Accept(in Message message, long start, long length)
        {
            responses.Add(new ResponseLocation(start, length, message.RequestUid, message.Operation, message.FrameCount));
            return null;
        }
    }

    /// <summary>
    /// One connection to the server, from connect to loss. Everything but <see cref="Network"/> and the completion
    /// source is guarded by the link's lock. Never reused: each reconnection makes a new one, so a reader or writer
    /// still running for a lost one can recognise that (<see cref="Failed"/>) and touch nothing.
    /// </summary>
    private sealed class LinkConnection : ICoalescingWriterOwner
    {
        private readonly ServerLink _link;

        public LinkConnection(ServerLink link, NetworkConnection network)
        {
            _link = link;
            Network = network;

            // Local connections served by a native event loop stage their requests here from that loop's thread:
            // Forward flushes naming the local connection, so the write waits for the end of the loop's batch and
            // all of them share it.
            Writer = new CoalescingWriter(network.Output, link._gate, this, shared: true);
        }

        public NetworkConnection Network { get; }

        public CoalescingWriter Writer { get; }

        /// <summary>
        /// The requests forwarded and not yet answered, oldest first. The uids on one connection are consecutive
        /// (each is assigned and queued in the same locked step), so entry i has uid <see cref="FirstUid"/> + i,
        /// and a response is matched without a lookup table.
        /// </summary>
        public Queue<InFlightRequest> InFlight { get; } = new();

        /// <summary>The uid of the oldest request in <see cref="InFlight"/> (meaningless while it is empty).</summary>
        public uint FirstUid { get; set; }

        /// <summary>True once the connection has been given up; set once, under the link's lock.</summary>
        public bool Failed { get; set; }

        /// <summary>Completes when the connection has been given up.</summary>
        public TaskCompletionSource Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>When the connection was established (<see cref="Stopwatch"/> ticks).</summary>
        public long ConnectedAt { get; } = Stopwatch.GetTimestamp();

        public void OnWritten(int bytes)
        {
        }

        public void OnWriteFailed(Exception? exception)
        {
            if (exception is null)
            {
                _link.Fail(this, "the connection was closed while sending");
            }
            else if (NetworkErrors.IsConnectionFailure(exception))
            {
                _link.Fail(this, "sending failed: " + Describe(exception));
            }
            else
            {
                // A bug must cost the connection, which is re-established, never the proxy.
                Log.ServerLinkError(_link._logger, _link.Server, exception);
                _link.Fail(this, "internal error");
            }
        }

        public void OnWriterIdle()
        {
        }
    }
}
