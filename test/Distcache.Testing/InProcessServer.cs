using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using Distcache.Networking;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Testing;

/// <summary>
/// A real <see cref="DistcacheServer"/> on a real listener in this process. It has its own accept loop, so that a
/// test can stop it gracefully (<see cref="StopAsync"/>, as a shutdown does) or abruptly (<see cref="Kill"/>,
/// every connection reset at once, as a crash does) and start it again on the same address.
/// </summary>
public sealed class InProcessServer : IAsyncDisposable
{
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<NetworkConnection, Task> _connections = new();
    private readonly InProcessHost _host;
    private bool _ownsStore;
    private int _accepted;
    private volatile bool _killed;

    private InProcessServer(NetworkListener listener, ISessionStore store, bool ownsStore)
    {
        Store = store;
        _ownsStore = ownsStore;
        Server = new DistcacheServer(store);
        Address = listener.LocalAddress.Kind == AddressKind.Unix
            ? listener.LocalAddress
            : Address.Parse($"IP:127.0.0.1:{listener.LocalAddress.Port}");
        _host = InProcessHost.Start(listener, AcceptLoopAsync);
    }

    /// <summary>An address a client can connect to.</summary>
    public Address Address { get; }

    /// <summary>The store the server answers from.</summary>
    public ISessionStore Store { get; }

    /// <summary>The server.</summary>
    public DistcacheServer Server { get; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Listens on <paramref name="address"/> (a loopback port the kernel picks by default, or a unix path)
    /// over <paramref name="store"/>: the caller's, which outlives the server, or a fresh unbounded memory store of
    /// the server's own, disposed with it (or with the server that <see cref="Restart"/> starts on it).</summary>
    /// <param name="address">Where to listen.</param>
    /// <param name="store">The store, or null for a fresh one.</param>
    /// <returns>The running server.</returns>
    public static InProcessServer Start(string address = "IP:127.0.0.1:0", ISessionStore? store = null) =>
        new(NetworkListener.Listen(Address.Parse(address)), store ?? new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }), ownsStore: store is null);

    /// <summary>Listens again on the address of a stopped server, over the same store, so that a restart keeps the
    /// sessions.</summary>
    /// <param name="stopped">A server that was killed or stopped.</param>
    /// <returns>The running server.</returns>
    public static InProcessServer Restart(InProcessServer stopped)
    {
        ArgumentNullException.ThrowIfNull(stopped);
        var restarted = new InProcessServer(NetworkListener.Listen(stopped.Address), stopped.Store, stopped._ownsStore);
        stopped._ownsStore = false;
        return restarted;
    }

    /// <summary>Stops accepting and resets every open connection at once, as a crashed server would; the address is
    /// free again on return.</summary>
    public void Kill()
    {
        _killed = true;
        _host.Abort();
        foreach (var connection in _connections.Keys)
        {
            AbortQuietly(connection);
        }
    }

    /// <summary>Stops as a shutdown does: no more connections are accepted, and each open one finishes answering
    /// what it has read and is closed (the client sees its connection end, not a reset).</summary>
    /// <returns>A task that completes once every connection has ended.</returns>
    public Task StopAsync() => _host.StopAsync(StopLimit);

    /// <summary>Waits (bounded) for the connections to end after <see cref="Kill"/>.</summary>
    /// <returns>A task that completes once they have.</returns>
    public Task WaitStoppedAsync() => _host.Running.WaitAsync(StopLimit);

    /// <summary>Stops (see <see cref="StopAsync"/>) unless killed, waits for the connections to end, and disposes the
    /// store if it is the server's own.</summary>
    /// <returns>A task that completes once all that is done.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await WaitStoppedAsync();
        await _host.DisposeAsync();
        if (_ownsStore)
        {
            Store.Dispose();
        }
    }

    private static void AbortQuietly(NetworkConnection connection)
    {
        try
        {
            connection.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Its own loop disposed it a moment ago (NetworkConnection.Abort throws once the pipes are completed).
        }
    }

    private async Task AcceptLoopAsync(NetworkListener listener, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await listener.AcceptAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NetworkException or SocketException)
            {
                break;
            }

            Interlocked.Increment(ref _accepted);
            _connections[connection] = ServeAsync(connection, stopping);
            if (_killed)
            {
                AbortQuietly(connection);
            }
        }

        await Task.WhenAll(_connections.Values);
    }

    private async Task ServeAsync(NetworkConnection connection, CancellationToken stopping)
    {
        // Off the accept loop's stack: the loop goes straight back to accepting.
        await Task.Yield();
        try
        {
            await Server.ServeAsync(new DuplexPipe(connection.Input, connection.Output), connection.PeerDescription, stopping);
        }
        finally
        {
            await connection.DisposeAsync();
            _connections.TryRemove(connection, out _);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
