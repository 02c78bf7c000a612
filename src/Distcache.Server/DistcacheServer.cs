using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Security.Cryptography.X509Certificates;
using Distcache.Networking;
using Distcache.Protocol;
using Distcache.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Distcache.Server;

/// <summary>
/// The distcache server: serves any number of connections concurrently against one <see cref="ISessionStore"/>.
/// Each connection answers its requests in order; a peer that breaks the protocol is logged once and loses
/// only its own connection.
/// </summary>
public sealed class DistcacheServer
{
    private readonly RequestProcessor _processor;
    private readonly DistcacheServerOptions _options;
    private readonly ILogger _logger;
    // Connections RunAsync accepted and has not yet closed, TLS handshakes included, for the shutdown to abort.
    private readonly ConcurrentDictionary<long, NetworkConnection> _open = new();

    // Every connection being served (by RunAsync or ServeAsync), for the sweep; the network connection is null
    // when the caller of ServeAsync owns the transport.
    private readonly ConcurrentDictionary<ServerConnection, NetworkConnection?> _live = new();
    private readonly Lock _sweepGate = new();
    private Timer? _sweepTimer;
    private long _nextConnectionId;

    // Connections RunAsync is serving, counted before their task starts so that a burst of accepts cannot
    // overshoot the cap.
    private long _served;

    // Refusals not yet logged, and when the last refusal line was written: at most one line a second.
    private long _refusedUnlogged;
    private long _refusedLoggedAt;
    private string _lastRefusedPeer = string.Empty;

    /// <summary>Creates a server over a store.</summary>
    public DistcacheServer(ISessionStore store, DistcacheServerOptions? options = null, ILogger<DistcacheServer>? logger = null)
    {
        _processor = new RequestProcessor(store);
        _options = options ?? new DistcacheServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxConnections);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MessageTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.IdleTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.WriteTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.SweepInterval, TimeSpan.Zero);
        if (_options.Access is not null && _options.Tls is not { RequiresClientCertificate: true })
        {
            throw new ArgumentException("partitioning by client identity needs TLS with a client CA (DistcacheServerOptions.Tls with a ClientCaFile)", nameof(options));
        }

        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The settings the server runs with.</summary>
    public DistcacheServerOptions Options => _options;

    /// <summary>The store the server answers from.</summary>
    public ISessionStore Store => _processor.Store;

    /// <summary>Counters for operators.</summary>
    public ServerStatistics Statistics { get; } = new();

    /// <summary>
    /// Serves one connection until the peer closes it, breaks the protocol, or <paramref name="cancellationToken"/>
    /// asks for shutdown (then the responses being written are finished first). Never throws for anything the
    /// peer does; the caller closes the transport afterwards.
    /// </summary>
    /// <param name="transport">The connection's byte streams.</param>
    /// <param name="peer">The peer's description for logs (e.g. <c>IP:127.0.0.1:40312</c>).</param>
    /// <param name="cancellationToken">Shutdown.</param>
    /// <returns>The violation that closed the connection, if one did.</returns>
    /// <remarks>The timeouts of <see cref="DistcacheServerOptions"/> apply: on expiry the loop is woken through
    /// <see cref="PipeReader.CancelPendingRead"/> and <see cref="PipeWriter.CancelPendingFlush"/> and ends; a message
    /// timeout is returned as a <see cref="ProtocolViolationKind.TruncatedMessage"/> violation.</remarks>
    public Task<ProtocolViolation?> ServeAsync(IDuplexPipe transport, string peer, CancellationToken cancellationToken = default) =>
        ServeCoreAsync(transport, peer, network: null, access: null, cancellationToken);

    private async Task<ProtocolViolation?> ServeCoreAsync(IDuplexPipe transport, string peer, NetworkConnection? network, ClientAccess? access, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transport);
        RequestProcessor processor = access is null ? _processor : new RequestProcessor(new PartitionedSessionStore(_processor.Store, access));
        var connection = new ServerConnection(transport, peer, processor, Statistics, _logger);
        Statistics.ConnectionOpened();
        Log.ConnectionOpened(_logger, peer);
        using CancellationTokenRegistration stop = cancellationToken.Register(static c => ((ServerConnection)c!).Stop(), connection);
        Register(connection, network);
        try
        {
            // The loop watches the token through Stop() rather than through ReadAsync, so that a shutdown lets the
            // batch being answered finish and be flushed.
            ProtocolViolation? violation = await connection.RunAsync(CancellationToken.None).ConfigureAwait(false);
            connection.TryEnd();
            return ExpiryViolation(connection) ?? violation;
        }
        catch (Exception e) when (NetworkErrors.IsTransportFailure(e))
        {
            // An expired connection was aborted by the sweep, which has logged why; the failure is its echo.
            if (!connection.TryEnd())
            {
                return ExpiryViolation(connection);
            }

            // A reset in the middle of a message cuts it short just as an end of stream there does, and is counted
            // alike, so that operators see peers that abandon requests half-sent however they leave.
            long pending = connection.PendingBytes;
            if (pending > 0)
            {
                Log.ProtocolViolation(_logger, peer, $"{ProtocolViolationKind.TruncatedMessage.Describe()} ({pending} bytes pending; {e.Message})", Statistics.Violation());
                return new ProtocolViolation(ProtocolViolationKind.TruncatedMessage, pending);
            }

            Log.ConnectionFailed(_logger, peer, e.Message);
            return null;
        }
        catch (Exception e)
        {
            // A bug in a store or in our own code must cost one connection, never the process.
            connection.TryEnd();
            Log.ConnectionError(_logger, peer, e);
            return null;
        }
        finally
        {
            _live.TryRemove(connection, out _);
            Statistics.ConnectionClosed();
            Log.ConnectionClosed(_logger, peer, connection.Requests);
        }
    }

    private static ProtocolViolation? ExpiryViolation(ServerConnection connection) =>
        connection.Expiry == ConnectionExpiry.MessageTimeout
            ? new ProtocolViolation(ProtocolViolationKind.TruncatedMessage, connection.PendingBytes)
            : null;

    private void Register(ServerConnection connection, NetworkConnection? network)
    {
        _live[connection] = network;
        if (_options.MessageTimeout == TimeSpan.Zero && _options.IdleTimeout == TimeSpan.Zero && _options.WriteTimeout == TimeSpan.Zero && _options.MaxConnections == 0)
        {
            return;
        }

        // One timer for the whole server, running only while there are connections: the hot path never touches
        // a timer, and an idle server (or one only used in tests) keeps none alive.
        lock (_sweepGate)
        {
            _sweepTimer ??= new Timer(static s => ((DistcacheServer)s!).Sweep(), this, _options.SweepInterval, Timeout.InfiniteTimeSpan);
        }
    }

    private void Sweep()
    {
        try
        {
            SweepConnections();
        }
        catch (Exception e)
        {
            // A timer callback that throws ends the process; a bug here must cost at most one sweep.
            Log.SweepFailed(_logger, e);
        }

        lock (_sweepGate)
        {
            if (_live.IsEmpty && Interlocked.Read(ref _refusedUnlogged) == 0)
            {
                _sweepTimer?.Dispose();
                _sweepTimer = null;
            }
            else
            {
                _sweepTimer?.Change(_options.SweepInterval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private void SweepConnections()
    {
        long now = Environment.TickCount64;
        long messageMs = (long)_options.MessageTimeout.TotalMilliseconds;
        long idleMs = (long)_options.IdleTimeout.TotalMilliseconds;
        long writeMs = (long)_options.WriteTimeout.TotalMilliseconds;
        foreach ((ServerConnection connection, NetworkConnection? network) in _live)
        {
            ConnectionExpiry expiry = connection.Check(now, messageMs, idleMs, writeMs);
            if (expiry == ConnectionExpiry.None || !connection.TryExpire(expiry))
            {
                continue;
            }

            switch (expiry)
            {
                case ConnectionExpiry.MessageTimeout:
                    Statistics.MessageTimedOut();
                    Log.ProtocolViolation(_logger, connection.Peer, $"message not complete within {messageMs} ms ({connection.PendingBytes} bytes pending)", Statistics.Violation());
                    break;
                case ConnectionExpiry.IdleTimeout:
                    Statistics.IdleTimedOut();
                    Log.IdleTimeout(_logger, connection.Peer, idleMs);
                    break;
                default:
                    Statistics.WriteTimedOut();
                    Log.WriteTimeout(_logger, connection.Peer, writeMs);
                    break;
            }

            // Woken only once counted: the loop ends at once, and whoever awaits it reads the statistics.
            connection.Wake();

            // Over a socket, closing it is what wakes a loop blocked in a socket write, and it frees the kernel's
            // buffers at once (RST) instead of after a drain the peer would never allow.
            network?.Abort();
        }

        LogRefusals(now, force: false);
    }

    /// <summary>Writes the refusal line if one is due: at most one a second, with the count since the last.</summary>
    private void LogRefusals(long now, bool force)
    {
        if (Interlocked.Read(ref _refusedUnlogged) == 0 || (!force && now - Interlocked.Read(ref _refusedLoggedAt) < 1000))
        {
            return;
        }

        Interlocked.Exchange(ref _refusedLoggedAt, now);
        long count = Interlocked.Exchange(ref _refusedUnlogged, 0);
        if (count > 0)
        {
            Log.ConnectionsRefused(_logger, count, Volatile.Read(ref _lastRefusedPeer), Interlocked.Read(ref _served), _options.MaxConnections);
        }
    }

    private async Task RefuseAsync(NetworkConnection connection)
    {
        Statistics.ConnectionRefused();
        Volatile.Write(ref _lastRefusedPeer, connection.PeerDescription);
        Interlocked.Increment(ref _refusedUnlogged);
        LogRefusals(Environment.TickCount64, force: false);

        // Its pipes were never created, so this closes the socket at once with an orderly end of stream: the peer
        // sees EOF straight away rather than waiting in the backlog for a slot.
        await connection.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Accepts and serves connections until <paramref name="stoppingToken"/> is cancelled, then shuts down
    /// cleanly: stops accepting, lets every connection finish and flush the responses it is writing (up to
    /// <see cref="DistcacheServerOptions.ShutdownTimeout"/>), and closes them. The caller disposes the listener,
    /// which removes a unix socket file; a listener disposed while the server runs stops the accepting too, and the
    /// connections then have <see cref="DistcacheServerOptions.ShutdownTimeout"/> to end before they are closed.
    /// </summary>
    public async Task RunAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        string name = listener.LocalAddress.ToString();

        // A failed accept, typically EMFILE under a connection flood, is logged and retried after a short pause.
        await listener.AcceptLoopAsync(
            connection => Accepted(connection, stoppingToken),
            e => Log.AcceptFailed(_logger, name, e),
            stoppingToken).ConfigureAwait(false);

        LogRefusals(Environment.TickCount64, force: true);
        Log.ShuttingDown(_logger, _open.Count);
        if (!await AllClosedAsync(_options.ShutdownTimeout).ConfigureAwait(false))
        {
            foreach (NetworkConnection open in _open.Values)
            {
                open.Abort();
            }

            await AllClosedAsync(Timeout.InfiniteTimeSpan).ConfigureAwait(false);
        }
    }

    // Waits, polling, until every connection RunAsync accepted has closed; false if the time ran out first. Polled
    // rather than awaited per connection, so that a connection costs no task bookkeeping for a shutdown that seldom
    // comes.
    private async Task<bool> AllClosedAsync(TimeSpan timeout)
    {
        long deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!_open.IsEmpty)
        {
            if (Environment.TickCount64 >= deadline)
            {
                return false;
            }

            await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
        }

        return true;
    }

    // On the thread that accepted the connection (an event loop's, with the native transport): the connection is
    // served right here until its first wait, which for a short-lived client usually means its whole request.
    private void Accepted(NetworkConnection connection, CancellationToken stoppingToken)
    {
        // Counted first, then checked: several loops accept at once, and a check before the count would let each
        // of them take the last place.
        if (Interlocked.Increment(ref _served) > _options.MaxConnections && _options.MaxConnections > 0)
        {
            Interlocked.Decrement(ref _served);
            _ = RefuseAsync(connection);
            return;
        }

        long id = Interlocked.Increment(ref _nextConnectionId);

        // A TLS handshake is CPU work a slow or hostile client can start at will: not on an event loop's thread,
        // which serves every other connection too.
        _ = _options.Tls is null ? HandleAsync(id, connection, stoppingToken) : Task.Run(() => HandleAsync(id, connection, stoppingToken), CancellationToken.None);
    }

    // Never throws: its task is not awaited.
    private async Task HandleAsync(long id, NetworkConnection connection, CancellationToken stoppingToken)
    {
        _open[id] = connection;
        try
        {
            ClientAccess? access = null;
            if (_options.Tls is { } tls)
            {
                if (!await AuthenticateAsync(tls, connection, stoppingToken).ConfigureAwait(false))
                {
                    return;
                }

                if (_options.Access is { } policy && (access = Admit(policy, connection)) is null)
                {
                    return;
                }
            }

            await ServeCoreAsync(new DuplexPipe(connection.Input, connection.Output), connection.PeerDescription, connection, access, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _served);
            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (NetworkErrors.IsTransportFailure(e))
            {
                Log.ConnectionFailed(_logger, connection.PeerDescription, e.Message);
            }
            finally
            {
                // Whatever the close did: the shutdown waits for this entry to go.
                _open.TryRemove(id, out _);
            }
        }
    }

    /// <summary>Runs the TLS handshake of an accepted connection; false (logged and counted) if it failed.</summary>
    private async Task<bool> AuthenticateAsync(TlsServerSettings tls, NetworkConnection connection, CancellationToken stoppingToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        deadline.CancelAfter(tls.HandshakeTimeout);
        try
        {
            await connection.WrapStreamAsync(tls.AuthenticateAsync, deadline.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (NetworkErrors.IsHandshakeFailure(e))
        {
            if (!stoppingToken.IsCancellationRequested)
            {
                Statistics.HandshakeFailed();
                string reason = e is OperationCanceledException
                    ? $"not completed within {(long)tls.HandshakeTimeout.TotalMilliseconds} ms"
                    : e.Message;
                Log.HandshakeFailed(_logger, connection.PeerDescription, reason);
            }

            return false;
        }
    }

    /// <summary>The access of an authenticated client, or null (logged and counted) if its identity has none.</summary>
    private ClientAccess? Admit(ClientAccessPolicy policy, NetworkConnection connection)
    {
        // The connection's TLS session owns the certificate.
        X509Certificate2? certificate = connection.PeerCertificate;
        ClientAccess? access = certificate is null ? null : policy.Resolve(certificate);
        if (access is null)
        {
            Statistics.IdentityRefused();
            Log.IdentityRefused(_logger, connection.PeerDescription, certificate?.SubjectName.Name ?? "(none)");
            return null;
        }

        Log.Authenticated(_logger, connection.PeerDescription, access.Identity, access.Partition, access.ReadOnly ? "read-only" : "read-write");
        return access;
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
