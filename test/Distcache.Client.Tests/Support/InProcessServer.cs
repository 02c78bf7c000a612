using System.Collections.Concurrent;
using System.IO.Pipelines;
using Distcache.Networking;
using Distcache.Server;
using Distcache.Storage;

namespace Distcache.Client.Tests.Support;

/// <summary>
/// A <see cref="DistcacheServer"/> on a real listener, with its own accept loop so that a test can stop it
/// abruptly (every connection reset at once) and start it again on the same address.
/// </summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly NetworkListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<NetworkConnection, Task> _connections = new();
    private readonly Task _acceptLoop;
    private int _accepted;
    private bool _stopped;

    private InProcessServer(NetworkListener listener, ISessionStore store)
    {
        _listener = listener;
        Store = store;
        Server = new DistcacheServer(store);
        Address = listener.LocalAddress.Kind == AddressKind.Unix
            ? listener.LocalAddress
            : Address.Parse($"IP:127.0.0.1:{listener.LocalAddress.Port}");
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>An address a client can connect to.</summary>
    public Address Address { get; }

    public ISessionStore Store { get; }

    public DistcacheServer Server { get; }

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Listens on <paramref name="address"/> (e.g. <c>IP:127.0.0.1:0</c> or a unix path) over <paramref name="store"/>
    /// (a fresh unbounded memory store if null; the store outlives the server, so a restart keeps the sessions).</summary>
    public static InProcessServer Start(string address, ISessionStore? store = null) =>
        new(NetworkListener.Listen(Address.Parse(address)), store ?? new MemorySessionStore(new MemorySessionStoreOptions { MaxSessions = 0 }));

    /// <summary>Listens again on the address of a stopped server, over the same store.</summary>
    public static InProcessServer Restart(InProcessServer stopped) => Start(stopped.Address.ToString(), stopped.Store);

    /// <summary>Stops accepting and resets every open connection at once (as a crashed server would).</summary>
    public void Kill()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        _stop.Cancel();
        _listener.Dispose();
        foreach (var connection in _connections.Keys)
        {
            AbortQuietly(connection);
        }
    }

    /// <summary>Waits for the connection loops to end (call <see cref="Kill"/> first).</summary>
    public async Task WaitStoppedAsync()
    {
        await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.WhenAll(_connections.Values).WaitAsync(TimeSpan.FromSeconds(10));
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        await WaitStoppedAsync();
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            NetworkConnection connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NetworkException or System.Net.Sockets.SocketException)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            _connections[connection] = ServeAsync(connection);
            if (_stopped)
            {
                AbortQuietly(connection);
            }
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

    private async Task ServeAsync(NetworkConnection connection)
    {
        await Task.Yield();
        try
        {
            await Server.ServeAsync(new DuplexPipe(connection.Input, connection.Output), connection.PeerDescription, _stop.Token);
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

/// <summary>A memory store whose GETs can be held back, so that a test can keep requests in flight on purpose.</summary>
internal sealed class GatedStore : ISessionStore
{
    private readonly MemorySessionStore _inner = new(new MemorySessionStoreOptions { MaxSessions = 0 });
    private TaskCompletionSource? _gate;
    private int _waiting;

    /// <summary>GETs that are currently held back.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    public void Close() => Volatile.Write(ref _gate, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    public void Open() => Interlocked.Exchange(ref _gate, null)?.TrySetResult();

    public ValueTask<AddResult> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _inner.AddAsync(id, data, timeout, cancellationToken);

    public async ValueTask<bool> GetAsync<TState>(ReadOnlyMemory<byte> id, SessionDataReader<TState> reader, TState state, CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _gate) is { } gate)
        {
            Interlocked.Increment(ref _waiting);
            try
            {
                await gate.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }
        }

        return await _inner.GetAsync(id, reader, state, cancellationToken);
    }

    public ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => _inner.RemoveAsync(id, cancellationToken);

    public ValueTask<bool> ContainsAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default) => _inner.ContainsAsync(id, cancellationToken);

    public ValueTask<long> CountAsync(CancellationToken cancellationToken = default) => _inner.CountAsync(cancellationToken);

    public void Dispose()
    {
        Open();
        _inner.Dispose();
    }
}
