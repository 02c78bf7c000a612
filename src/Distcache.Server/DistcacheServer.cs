using System.Collections.Concurrent;
using System.IO.Pipelines;
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
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly ConcurrentDictionary<long, NetworkConnection> _open = new();
    private long _nextConnectionId;

    /// <summary>Creates a server over a store.</summary>
    public DistcacheServer(ISessionStore store, DistcacheServerOptions? options = null, ILogger<DistcacheServer>? logger = null)
    {
        _processor = new RequestProcessor(store);
        _options = options ?? new DistcacheServerOptions();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

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
    public async Task<ProtocolViolation?> ServeAsync(IDuplexPipe transport, string peer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        var connection = new ServerConnection(transport, peer, _processor, Statistics, _logger);
        Statistics.ConnectionOpened();
        Log.ConnectionOpened(_logger, peer);
        using CancellationTokenRegistration stop = cancellationToken.Register(static c => ((ServerConnection)c!).Stop(), connection);
        try
        {
            // The loop watches the token through Stop() rather than through ReadAsync, so that a shutdown lets the
            // batch being answered finish and be flushed.
            return await connection.RunAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException)
        {
            Log.ConnectionFailed(_logger, peer, e.Message);
            return null;
        }
        catch (Exception e)
        {
            // A bug in a store or in our own code must cost one connection, never the process.
            Log.ConnectionError(_logger, peer, e);
            return null;
        }
        finally
        {
            Statistics.ConnectionClosed();
            Log.ConnectionClosed(_logger, peer, connection.Requests);
        }
    }

    /// <summary>
    /// Accepts and serves connections until <paramref name="stoppingToken"/> is cancelled, then shuts down
    /// cleanly: stops accepting, lets every connection finish and flush the responses it is writing (up to
    /// <see cref="DistcacheServerOptions.ShutdownTimeout"/>), and closes them. The caller disposes the listener,
    /// which removes a unix socket file.
    /// </summary>
    public async Task RunAsync(NetworkListener listener, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        string name = listener.LocalAddress.ToString();
        while (!stoppingToken.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await listener.AcceptAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NetworkException or System.Net.Sockets.SocketException or IOException)
            {
                // Typically EMFILE under a connection flood: back off briefly instead of spinning.
                Log.AcceptFailed(_logger, name, e);
                await Task.Delay(50, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }

            long id = Interlocked.Increment(ref _nextConnectionId);
            _connections[id] = HandleAsync(id, connection, stoppingToken);
        }

        Log.ShuttingDown(_logger, _connections.Count);
        Task all = Task.WhenAll(_connections.Values);
        if (await Task.WhenAny(all, Task.Delay(_options.ShutdownTimeout, CancellationToken.None)).ConfigureAwait(false) != all)
        {
            foreach (NetworkConnection open in _open.Values)
            {
                open.Abort();
            }

            await all.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task HandleAsync(long id, NetworkConnection connection, CancellationToken stoppingToken)
    {
        // Run the connection off the accept loop's stack: the accept loop must go straight back to accepting.
        await Task.Yield();
        _open[id] = connection;
        try
        {
            await ServeAsync(new DuplexPipe(connection.Input, connection.Output), connection.PeerDescription, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                Log.ConnectionFailed(_logger, connection.PeerDescription, e.Message);
            }

            _open.TryRemove(id, out _);
            _connections.TryRemove(id, out _);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
