using System.Buffers;
using System.IO.Pipelines;
using Distcache.Client;
using Distcache.Networking;
using Distcache.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Proxy;

/// <summary>
/// dc_client's engine for several servers: serves local connections like <see cref="DistcacheProxy"/>, and sends
/// each request to the server its session id routes to on a consistent hash ring (<see cref="ShardedDistcacheClient"/>:
/// one independent link per server, each reconnecting on its own).
/// </summary>
/// <remarks>
/// <para>A server that is down is skipped: ADDs of its ids go to the next live server on the ring, and GETs of
/// sessions it held miss. When no server is reachable, or a request's link fails under it, the request is
/// answered DISCONNECTED, as the single-server proxy answers while its server is away.</para>
/// <para>Each local connection's requests are answered in the order they arrive. Malformed requests close that
/// connection, as the server would.</para>
/// </remarks>
public sealed class ShardedProxy : IAsyncDisposable
{
    private readonly ShardedDistcacheClient _client;
    private readonly TimeSpan _idleTimeout;
    private readonly ILogger _logger;
    private int _running;

    /// <summary>Creates the proxy and starts connecting to every server in the background.</summary>
    /// <param name="servers">The servers; at least two make sense, one works.</param>
    /// <param name="linkOptions">Timeouts, reconnect delays and connection options of every server link (the address is ignored).</param>
    /// <param name="idleTimeout">Closes a local connection idle for this long; zero for never.</param>
    /// <param name="loggerFactory">Where to log; null for nowhere.</param>
    public ShardedProxy(IReadOnlyList<Address> servers, DistcacheClientOptions linkOptions, TimeSpan idleTimeout, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(servers);
        ArgumentNullException.ThrowIfNull(linkOptions);
        ArgumentOutOfRangeException.ThrowIfLessThan(idleTimeout, TimeSpan.Zero);
        _client = new ShardedDistcacheClient(servers, linkOptions);
        _idleTimeout = idleTimeout;
        _logger = (ILogger?)loggerFactory?.CreateLogger<ShardedProxy>() ?? NullLogger.Instance;
    }

    /// <summary>The client that routes the requests (its ring and per-server links).</summary>
    public ShardedDistcacheClient Client => _client;

    /// <summary>Completes when every server has been tried once.</summary>
    public Task FirstConnectAttempts => _client.WaitForFirstAttemptsAsync();

    /// <summary>Accepts local connections until <paramref name="stoppingToken"/> fires, then closes them.</summary>
    /// <param name="listener">Where local connections arrive.</param>
    /// <param name="stoppingToken">Shutdown.</param>
    /// <returns>A task that completes when every connection is closed.</returns>
    public async Task RunAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        if (Interlocked.Exchange(ref _running, 1) != 0)
        {
            throw new InvalidOperationException("A ShardedProxy runs once.");
        }

        // As the single-server proxy: try the servers before accepting, so early requests are forwarded.
        await FirstConnectAttempts.WaitAsync(stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        var connections = new HashSet<Task>();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                NetworkConnection connection;
                try
                {
                    connection = await listener.AcceptAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (Exception e) when (e is NetworkException or System.Net.Sockets.SocketException or IOException)
                {
                    Log.ShardedAcceptFailed(_logger, e.Message);
                    await Task.Delay(100, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    continue;
                }

                Task serving = ServeAsync(connection, stoppingToken);
                lock (connections)
                {
                    connections.Add(serving);
                }

                _ = serving.ContinueWith(
                    t =>
                    {
                        lock (connections)
                        {
                            connections.Remove(t);
                        }
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
        }
        finally
        {
            Task[] remaining;
            lock (connections)
            {
                remaining = [.. connections];
            }

            await Task.WhenAll(remaining).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _client.DisposeAsync();

    private async Task ServeAsync(NetworkConnection connection, CancellationToken stoppingToken)
    {
        await Task.Yield();
        string peer = connection.PeerDescription;
        await using (connection.ConfigureAwait(false))
        {
            try
            {
                await ServeRequestsAsync(connection.Input, connection.Output, peer, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Shutdown or an idle connection: close it.
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or NetworkException or ObjectDisposedException)
            {
                Log.LocalConnectionFailed(_logger, peer, e.Message);
            }
        }
    }

    private async Task ServeRequestsAsync(PipeReader input, PipeWriter output, string peer, CancellationToken stoppingToken)
    {
        var decoder = new MessageDecoder(MessageDirection.Requests);
        var data = new ArrayBufferWriter<byte>();
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        while (true)
        {
            if (_idleTimeout > TimeSpan.Zero)
            {
                idle.CancelAfter(_idleTimeout);
            }

            ReadResult read = await input.ReadAsync(idle.Token).ConfigureAwait(false);
            idle.CancelAfter(Timeout.InfiniteTimeSpan);
            ReadOnlySequence<byte> buffer = read.Buffer;
            SequencePosition position = buffer.Start;
            bool answered = false;
            ProtocolViolation? violation = null;
            while (true)
            {
                DecodeStatus status = DecodeNext(decoder, buffer.Slice(position), out Message request, out SequencePosition next, out ProtocolViolation frameViolation);
                if (status == DecodeStatus.NeedMoreData)
                {
                    break;
                }

                if (status == DecodeStatus.Violation)
                {
                    violation = frameViolation;
                    break;
                }

                // The payload points into 'buffer', valid until AdvanceTo, and the client copies it before sending.
                if (!await AnswerAsync(request, output, data, stoppingToken).ConfigureAwait(false))
                {
                    violation = new ProtocolViolation(ProtocolViolationKind.AddPayloadTooShort, ProtocolConstants.FrameHeaderSize);
                    break;
                }

                position = next;
                answered = true;
            }

            input.AdvanceTo(position, buffer.End);
            if (answered && (await output.FlushAsync(stoppingToken).ConfigureAwait(false)).IsCompleted)
            {
                return;
            }

            if (violation is { } v)
            {
                Log.LocalViolation(_logger, peer, v.Describe());
                return;
            }

            if (read.IsCompleted)
            {
                return;
            }
        }
    }

    private static DecodeStatus DecodeNext(MessageDecoder decoder, ReadOnlySequence<byte> unread, out Message message, out SequencePosition next, out ProtocolViolation violation)
    {
        var reader = new SequenceReader<byte>(unread);
        DecodeStatus status = decoder.TryDecode(ref reader, out message, out violation);
        next = reader.Position;
        return status;
    }

    /// <summary>Answers one request; false if it is a malformed ADD that must close the connection.</summary>
    private async ValueTask<bool> AnswerAsync(Message request, PipeWriter output, ArrayBufferWriter<byte> data, CancellationToken cancellationToken)
    {
        uint uid = request.RequestUid;
        Operation operation = request.Operation;
        try
        {
            switch (operation)
            {
                case Operation.Add:
                    {
                        AddRequestParseResult parse = AddRequest.TryParse(request.Payload, out AddRequest add);
                        if (parse == AddRequestParseResult.PayloadTooShort)
                        {
                            return false;
                        }

                        if (parse != AddRequestParseResult.Valid)
                        {
                            Responses.WriteStatus(output, uid, operation, parse.ToStatusCode());
                            return true;
                        }

                        AddOutcome outcome = await _client.AddAsync(add.Id, add.Data, TimeSpan.FromMilliseconds(add.TimeoutMilliseconds), cancellationToken).ConfigureAwait(false);
                        Responses.WriteStatus(output, uid, operation, ToStatus(outcome));
                        return true;
                    }

                case Operation.Get:
                    {
                        if (!Requests.IsValidSessionId(request.Payload.Length))
                        {
                            Responses.WriteStatus(output, uid, operation, StatusCode.NotOk);
                            return true;
                        }

                        data.ResetWrittenCount();
                        GetOutcome outcome = await _client.GetAsync(request.Payload, data, cancellationToken).ConfigureAwait(false);
                        switch (outcome)
                        {
                            case GetOutcome.Found:
                                Responses.WriteData(output, uid, operation, data.WrittenSpan);
                                break;
                            case GetOutcome.Disconnected:
                                Responses.WriteStatus(output, uid, operation, StatusCode.Disconnected);
                                break;
                            default:
                                Responses.WriteStatus(output, uid, operation, StatusCode.NotOk);
                                break;
                        }

                        return true;
                    }

                default:
                    {
                        if (!Requests.IsValidSessionId(request.Payload.Length))
                        {
                            Responses.WriteStatus(output, uid, operation, StatusCode.NotOk);
                            return true;
                        }

                        bool yes = operation == Operation.Remove
                            ? await _client.RemoveAsync(request.Payload, cancellationToken).ConfigureAwait(false)
                            : await _client.ContainsAsync(request.Payload, cancellationToken).ConfigureAwait(false);
                        Responses.WriteStatus(output, uid, operation, yes ? StatusCode.Ok : StatusCode.NotOk);
                        return true;
                    }
            }
        }
        catch (Exception e) when (e is DistcacheConnectionException or TimeoutException)
        {
            // No server could take it, or its link broke: what the single-server proxy says while its server is away.
            Responses.WriteStatus(output, uid, operation, StatusCode.Disconnected);
            return true;
        }
        catch (ArgumentException)
        {
            // Within the protocol's limits but outside the client's (a timeout over 7 days): the server's answer.
            Responses.WriteStatus(output, uid, operation, operation == Operation.Add ? StatusCode.AddErrTimeoutRange : StatusCode.NotOk);
            return true;
        }
    }

    private static StatusCode ToStatus(AddOutcome outcome) => outcome switch
    {
        AddOutcome.Stored => StatusCode.Ok,
        AddOutcome.AlreadyExists => StatusCode.AddErrMatchingSession,
        AddOutcome.Corrupt => StatusCode.AddErrCorrupt,
        AddOutcome.TimeoutOutOfRange => StatusCode.AddErrTimeoutRange,
        AddOutcome.IdOutOfRange => StatusCode.AddErrIdRange,
        AddOutcome.DataOutOfRange => StatusCode.AddErrDataRange,
        AddOutcome.Disconnected => StatusCode.Disconnected,
        _ => StatusCode.NotOk,
    };
}
